"""A real hypercorn serving the real app on a loopback socket, in a thread, with the very
hypercorn configuration (limits, timeouts) the server runtime uses. The DHT behind it is the
HTTP tests' fake backend: what these tests exercise is the HTTP layer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import trio
from hypercorn.trio import serve

from parsec.config import ServerSettings
from parsec.server.app import create_app
from parsec.server.listen import bind_socket, http_config

from .conftest import FakeBackend


@contextlib.contextmanager
def live_server(backend: FakeBackend, settings: ServerSettings) -> Iterator[str]:
    """Serve until the block ends; yields the base URL."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    started = threading.Event()
    state: dict = {}

    async def main() -> None:
        stop = trio.Event()
        state["token"], state["stop"] = trio.lowlevel.current_trio_token(), stop
        started.set()
        await serve(create_app(backend, settings), http_config(settings, sock), shutdown_trigger=stop.wait)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(10), "hypercorn thread did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        trio.from_thread.run_sync(state["stop"].set, trio_token=state["token"])
        thread.join(10)
