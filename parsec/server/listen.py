"""The server's HTTP listener: the socket bound by parsec, served by hypercorn on trio."""

from __future__ import annotations

import logging
import socket

from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from parsec.config import ServerSettings
from parsec.net import ports


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP socket ourselves: a busy port is a clear error, not a sys.exit; port 0
    is a free port the original's ``nodes_ecs`` can store (``ports.CHOSEN_RANGE``)."""
    try:
        sock = ports.bind_tcp(host, port)
    except ports.NoFreePort as error:
        raise RuntimeError(f"cannot bind the HTTP API: {error}") from None
    except OSError as error:
        raise RuntimeError(f"cannot bind the HTTP API to {host}:{port}: {error.strerror}") from None
    sock.listen(1024)
    return sock


def http_config(settings: ServerSettings, sock: socket.socket) -> HypercornConfig:
    """hypercorn serving on ``sock`` (which it then owns) with the server's limits."""
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("parsec.server.http")
    # hypercorn's idle timer runs from the connection's start until a request head is complete,
    # so it bounds the time a head may take (slow or silent clients) as well as keep-alive
    config.keep_alive_timeout = settings.idle_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes  # bigger request heads: refused
    config.read_timeout = settings.body_timeout  # a client silent mid-body is dropped
    return config


async def serve_http(app, config: HypercornConfig) -> None:
    """Serve the ASGI ``app`` as ``config`` says until cancelled (on the caller's trio loop)."""
    await hypercorn_serve(app, config)
