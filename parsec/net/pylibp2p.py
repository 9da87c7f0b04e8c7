"""Everything parsec needs from py-libp2p's internals, in one place.

py-libp2p 0.8.1 works as a host (TCP + Noise + Yamux) but several defaults make a DHT
testbed or a measurement server crawl (design.md, "pitfalls"). The fixes touch private
names, so they live here, are applied once per process, and the package pins
``libp2p==0.8.1``:

1. ``swarm._HAPPY_EYEBALLS_DELAY``: every dial waited 250 ms even after it succeeded.
2. The AutoConnector keeps dialling towards ~200 connections per host and saturates the
   event loop; parsec peers only connect to peers they query.
3. Addresses added by ``host.connect`` expire after 120 s; we add addresses ourselves with
   ttl 0 (never expires) and open streams with ``host.new_stream`` only.
4. The ``libp2p`` logger is noisy at INFO/WARNING for normal stream ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import version

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.network import swarm as _swarm
from libp2p.network.auto_connector import AutoConnector
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore

PERMANENT_TTL = 0  # py-libp2p: ttl 0 never expires
PEERSTORE_MAX_PEERS = 100_000

_applied = False


async def _no_auto_connect(self: AutoConnector) -> None:  # noqa: ARG001 - replaces a method
    return None


def apply_workarounds() -> None:
    """Patch py-libp2p's process-wide defaults (idempotent)."""
    global _applied
    if _applied:
        return
    _swarm._HAPPY_EYEBALLS_DELAY = 0.0
    AutoConnector.maybe_connect = _no_auto_connect  # type: ignore[method-assign]
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    _applied = True


def keypair(seed: bytes | None = None) -> KeyPair:
    """An Ed25519 identity; a 32-byte seed makes it reproducible."""
    return create_new_key_pair(seed)


def create_host(key: KeyPair, listen_host: str = "127.0.0.1", port: int = 0) -> tuple[IHost, multiaddr.Multiaddr]:
    """A TCP + Noise + Yamux host (QUIC ran with stream errors: design.md pitfall 11)."""
    apply_workarounds()
    listen = multiaddr.Multiaddr(f"/ip4/{listen_host}/tcp/{port}")
    host = new_host(
        key_pair=key,
        listen_addrs=[listen],
        muxer_preference="YAMUX",
        peerstore_opt=PeerStore(max_peers=PEERSTORE_MAX_PEERS),
    )
    return host, listen


def listen_addrs(host: IHost) -> list[multiaddr.Multiaddr]:
    """The host's bound addresses (port resolved), without the /p2p suffix."""
    addrs: list[multiaddr.Multiaddr] = []
    for listener in host.get_network().listeners.values():
        addrs.extend(listener.get_addrs())
    return addrs


def remember(host: IHost, peer_id: ID, addrs: Iterable[multiaddr.Multiaddr]) -> None:
    """Add addresses that never expire (pitfall 5)."""
    addrs = list(addrs)
    if addrs:
        host.get_peerstore().add_addrs(peer_id, addrs, PERMANENT_TTL)


def known_addrs(host: IHost, peer_id: ID) -> list[multiaddr.Multiaddr]:
    try:
        return list(host.get_peerstore().addrs(peer_id))
    except Exception:  # PeerStoreError: unknown or expired
        return []


def forget(host: IHost, peer_id: ID) -> None:
    """Drop a peer's addresses (after a retrieval the provider must not stay warm)."""
    try:
        host.get_peerstore().clear_addrs(peer_id)
    except Exception:
        pass


def implementation() -> dict[str, str]:
    """What a ``nodes_ecs.dependencies`` row should say about the libp2p stack."""
    return {"libp2p": "py-libp2p", "libp2p_version": version("libp2p")}
