"""The ports a server registers: only what the original's ``nodes_ecs`` can store.

``nodes_ecs.server_port`` and ``peer_port`` are SMALLINT (interface.md, "Database"): a port
above 32767 is stored negative, and the Go scheduler then refuses the node (``invalid port
":-25535"``) and marks it offline. So:

- a configured port above ``PORT_MAX`` is refused when the settings are read (config.py);
- a server asked for port 0 ("any free port") does not take the kernel's choice (Linux's
  ephemeral range is 32768–60999) but a free port in ``CHOSEN_RANGE`` that it binds itself.
  The range starts at 20000: Ray's workers take 10002–19999 by default, and a port a Ray
  worker will want must not be held by a server on the same node.
"""

from __future__ import annotations

import random
import socket

PORT_MAX = 32767  # SMALLINT
CHOSEN_RANGE = (20000, PORT_MAX)
ATTEMPTS = 200


class NoFreePort(RuntimeError):
    """No free port in ``CHOSEN_RANGE`` after ``ATTEMPTS`` tries."""


def bind_tcp(host: str, port: int, *, reuse_address: bool = True,
             rng: random.Random | None = None) -> socket.socket:
    """A TCP socket bound to ``host:port``; port 0 means a free one in ``CHOSEN_RANGE``.

    Raises ``OSError`` for a given port that cannot be bound, ``NoFreePort`` when no port of
    the range could be.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port else _candidates(rng or random.Random())
    last: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as error:
            sock.close()
            last = error
            continue
        return sock
    if port:
        raise last  # type: ignore[misc]
    raise NoFreePort(f"no free TCP port on {host} in {CHOSEN_RANGE[0]}–{CHOSEN_RANGE[1]} after {ATTEMPTS} tries"
                     f" (last: {last.strerror if last else 'none'})")


def free_port(host: str, rng: random.Random | None = None) -> int:
    """A port in ``CHOSEN_RANGE`` free on ``host`` now, for a listener that binds it itself.

    Checked by binding it without SO_REUSEADDR and letting go: another process may take it
    in between, so the caller retries when its own bind fails.
    """
    sock = bind_tcp(host, 0, reuse_address=False, rng=rng)
    try:
        return sock.getsockname()[1]
    finally:
        sock.close()


def _candidates(rng: random.Random) -> list[int]:
    low, high = CHOSEN_RANGE
    return rng.sample(range(low, high + 1), ATTEMPTS)
