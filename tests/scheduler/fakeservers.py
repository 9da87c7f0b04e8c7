"""Scripted parsec servers on loopback for scheduler logic tests (the real ones are in
tests/integration): each answers /readiness, /provide and /retrieve as told."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from parsec.net import ports as ports_in_range


@dataclass
class Behaviour:
    ready: bool = True
    provide_status: int = 200
    provide_error: str = ""
    retrieve_error: str = ""
    retrieve_delay: float = 0.0  # seconds before a /retrieve answer (an operation in flight)
    provide_steps: list[tuple[str, str]] | None = None  # (step, error) per measurement, as a Go IPNI server
    calls: list[str] = field(default_factory=list)


def _app(behaviour: Behaviour):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        behaviour.calls.append(path)
        if path == "/readiness":
            status, body = (200, {"ready": True}) if behaviour.ready else (503, {"ready": False})
        elif path == "/provide":
            status = behaviour.provide_status
            steps = behaviour.provide_steps or [("provide", behaviour.provide_error)]
            body = {"CID": "QmFake", "Measurements": [{"Step": step, "Duration": 2_000_000, "Error": error}
                                                      for step, error in steps], "RoutingTableSize": 30}
        else:
            await asyncio.sleep(behaviour.retrieve_delay)
            status = 200
            body = {"CID": path.rsplit("/", 1)[1], "Measurements": [{"Step": "", "Duration": 1_000_000,
                                                                      "Error": behaviour.retrieve_error}], "RoutingTableSize": 30}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


@contextlib.asynccontextmanager
async def fake_servers(behaviours: list[Behaviour]):
    """Serve each behaviour on its own loopback port; yields the ports."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    stop = asyncio.Event()
    tasks, ports, sockets = [], [], []
    for behaviour in behaviours:
        sock = ports_in_range.bind_tcp("127.0.0.1", 0)  # a port nodes_ecs can store
        # listening before hypercorn runs: a request that comes first waits in the backlog
        # instead of being refused (which made a round skip when hypercorn started slowly)
        sock.listen(128)
        sockets.append(sock)  # keep it referenced: a collected socket closes its fd
        ports.append(sock.getsockname()[1])
        config = Config()
        config.bind = [f"fd://{sock.fileno()}"]
        config.accesslog = None
        tasks.append(asyncio.create_task(serve(_app(behaviour), config, shutdown_trigger=stop.wait)))
    await asyncio.sleep(0.3)
    try:
        yield ports
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for sock in sockets:
            sock.detach()  # hypercorn closed the fd itself
