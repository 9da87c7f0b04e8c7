"""Unreachable peers for the testbed: identities in routing tables that never answer.

About 45 % of the DHT server addresses seen on the public network were never reachable
(Nebula crawls), and dials to them are what stall classic provides: a walk waits the
dial timeout on each. A *ghost* is a real peer id whose address leads to a black hole — a
listener that accepts TCP connections and then never says a word, so the libp2p handshake
hangs until the dialer gives up (5 s for our peers, the implementation's own timeout for
Go and js peers). One black hole serves every ghost; ghosts are filled into routing tables
like live peers.
"""

from __future__ import annotations

import hashlib

import multiaddr
import trio
from libp2p.peer.id import ID

from parsec.net import pylibp2p
from parsec.net.wire import WirePeer

MAX_HELD = 4096  # connections a black hole holds at once; the oldest is dropped beyond


def ghost_count(live: int, fraction: float) -> int:
    """Ghosts so that ``fraction`` of all peers are unreachable."""
    if not 0 <= fraction < 1:
        raise ValueError("the unreachable fraction must be in [0, 1)")
    return round(live * fraction / (1 - fraction))


def ghosts(count: int, address: str, seed: int | None = None) -> list[WirePeer]:
    """``count`` peer ids whose only address is ``address`` (a black hole)."""
    where = [multiaddr.Multiaddr(address)]
    peers = []
    for i in range(count):
        secret = hashlib.sha256(f"ghost/{seed}/{i}".encode()).digest() if seed is not None else None
        key = pylibp2p.keypair(secret)
        peers.append(WirePeer.of(ID.from_pubkey(key.public_key), where))
    return peers


async def serve_black_hole(host: str = "127.0.0.1", task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections and hold them silently until the dialer hangs up."""
    held: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        if len(held) > MAX_HELD:
            await held.pop(0).aclose()
        try:
            while await stream.receive_some(65536):
                pass  # discard whatever the dialer sends; answer nothing
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if stream in held:
                held.remove(stream)
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host=host)
    port = listeners[0].socket.getsockname()[1]
    task_status.started(f"/ip4/{host}/tcp/{port}")
    await trio.serve_listeners(hold, listeners)
