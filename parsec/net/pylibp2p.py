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
5. The default resource manager caps a host at 256 outbound connections and the swarm
   prunes above 300: a full-routing-table crawl stops at 256 peers, and lookups fail to
   dial once a host has met 256 peers. Limits are raised to go-libp2p's connection-manager
   shape: prune above 900 down to 600, hard cap far above.
6. Yamux sends a WINDOW_UPDATE after every read (``PY_YAMUX_RELEASE_ON_READ``, on by
   default); go-yamux sends one only once half the receive window is used. Off here, as in
   go: a kad request/response exchange writes 3 frames instead of 4.
7. The resource manager's connection total over-counts: dials that timed out stay counted
   as open connections, so where many ids are unreachable the total runs far above the
   connections really open. Its "graceful degradation" then halves the cap and every later
   dial is "denied by resource manager": a crawl stops short of the network and later
   lookups cannot dial the peers it missed (what this did to one crawl:
   docs/architecture.md, "By-hand observations"). Its totals, circuit breaker, degradation
   and memory limits are off; the per-direction ``ConnectionLimits`` and the connection
   manager bound connections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.network import swarm as _swarm
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.rcmgr import new_resource_manager
from libp2p.rcmgr.connection_limits import ConnectionLimits
from libp2p.rcmgr.manager import ResourceLimits
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore

if TYPE_CHECKING:
    from libp2p.kad_dht.kad_dht import KadDHT

PERMANENT_TTL = 0  # py-libp2p: ttl 0 never expires
PEERSTORE_MAX_PEERS = 100_000
CONNECTIONS_LOW, CONNECTIONS_HIGH, CONNECTIONS_MAX = 600, 900, 8192  # go connmgr: low 600, high 900
_UNCOUNTED = ResourceLimits(max_connections=2**62, max_memory_mb=2**40, max_streams=2**62)
"""The resource manager's own totals over-count (workaround 7): its caps are left to
``ConnectionLimits`` and the connection manager instead."""

_applied = False


async def _no_auto_connect(self: AutoConnector) -> None:  # noqa: ARG001 - replaces a method
    return None


def apply_workarounds() -> None:
    """Patch py-libp2p's process-wide defaults (idempotent)."""
    global _applied
    if _applied:
        return
    _swarm._HAPPY_EYEBALLS_DELAY = 0.0
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")  # read at each use by py-libp2p's yamux
    AutoConnector.maybe_connect = _no_auto_connect  # type: ignore[method-assign]
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    _applied = True


def keypair(seed: bytes | None = None) -> KeyPair:
    """An Ed25519 identity; a 32-byte seed makes it reproducible."""
    return create_new_key_pair(seed)


def keypair_in(region: str, model) -> KeyPair:
    """An identity whose peer id the latency model (``parsec.model.latency.LatencyModel``) places
    in ``region``: drawn until one lands there. ValueError if the model places nobody there."""
    if region not in model.regions or model.weights[model.index(region)] <= 0:
        raise ValueError(f"the latency model places no peer in region {region!r}")
    while True:
        key = keypair()
        if model.region_of(ID.from_pubkey(key.public_key).to_bytes()) == region:
            return key


def create_host(key: KeyPair, listen_host: str = "127.0.0.1", port: int = 0) -> tuple[IHost, multiaddr.Multiaddr]:
    """A TCP + Noise + Yamux host (QUIC ran with stream errors: design.md pitfall 11)."""
    apply_workarounds()
    listen = multiaddr.Multiaddr(f"/ip4/{listen_host}/tcp/{port}")
    limits = ConnectionLimits(max_pending_inbound=512, max_pending_outbound=512,
                              max_established_inbound=CONNECTIONS_MAX, max_established_outbound=CONNECTIONS_MAX,
                              max_established_per_peer=8, max_established_total=2 * CONNECTIONS_MAX)
    host = new_host(
        key_pair=key,
        listen_addrs=[listen],
        muxer_preference="YAMUX",
        peerstore_opt=PeerStore(max_peers=PEERSTORE_MAX_PEERS),
        resource_manager=new_resource_manager(limits=_UNCOUNTED, connection_limits=limits, enable_metrics=False,
                                              enable_circuit_breaker=False, enable_graceful_degradation=False,
                                              enable_memory_limits=False),
        connection_config=ConnectionConfig(max_connections=CONNECTIONS_MAX, low_watermark=CONNECTIONS_LOW,
                                           high_watermark=CONNECTIONS_HIGH),
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


def serves_protocol(host: IHost, peer_id: ID, protocol: str) -> bool | None:
    """Whether identify listed ``protocol`` among the peer's; None before identify
    answered (the peerstore then lists no protocol of the peer)."""
    try:
        protocols = host.get_peerstore().get_protocols(peer_id)
    except Exception:  # PeerStoreError: nothing known of the peer yet
        return None
    if not protocols:
        return None
    return protocol in protocols


def forget(host: IHost, peer_id: ID) -> None:
    """Drop a peer's addresses (after a retrieval the provider must not stay warm)."""
    try:
        host.get_peerstore().clear_addrs(peer_id)
    except Exception:
        pass


def implementation() -> dict[str, str]:
    """What a ``nodes_ecs.dependencies`` row should say about the libp2p stack."""
    return {"libp2p": "py-libp2p", "libp2p_version": version("libp2p")}


# -- py-libp2p's own KadDHT (the ``pylibp2p`` fleet, ``parsec.net.stock``) ------------------
#
# These are *environment* fixes and *observation*: none changes how KadDHT chooses peers,
# how many it asks, when its lookups stop, or what it sends. The fleet measures that
# implementation as it is (design.md); these only keep it able to run on a testbed and
# let us count what it did.


def keep_addresses(host: IHost) -> None:
    """Environment fix (pitfall 5): addresses in ``host``'s peerstore never expire.

    py-libp2p keeps one TTL per *peer*, overwritten by every ``add_addrs``: ``host.connect``
    sets 120 s, KadDHT's FIND_NODE handling 3600 s, signed records 7200 s. Once a peer's
    TTL lapses every ``addrs()`` raises ``peer ID is expired`` and clears its addresses,
    so a long-running KadDHT loses its bootstrap peers after two minutes while they stay
    in its routing table. Testbed peers never change address; parsec's own nodes add
    addresses with ttl 0 already, this does the same for code we do not control (by
    wrapping this peerstore's ``add_addrs``; ``add_addr`` and signed-record consumption go
    through it). Idempotent. Cost on a public network: stale addresses linger until a
    dial fails or the peerstore's cap (``PEERSTORE_MAX_PEERS``) evicts them.
    """
    store = host.get_peerstore()
    if getattr(store, "_parsec_keeps_addresses", False):
        return
    add_addrs = store.add_addrs

    def add_addrs_without_expiry(peer_id: ID, addrs, ttl: int = PERMANENT_TTL) -> None:  # noqa: ARG001
        add_addrs(peer_id, addrs, PERMANENT_TTL)

    store.add_addrs = add_addrs_without_expiry  # type: ignore[method-assign]
    store._parsec_keeps_addresses = True  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class KadRpc:
    """One request KadDHT sent: its type, to whom, and whether it got a usable answer."""

    kind: str  # "FIND_NODE" | "GET_PROVIDERS" | "ADD_PROVIDER"
    peer: ID
    answered: bool


class KadRpcRecorder:
    """Collects the ``KadRpc``s sent while a ``record()`` block is open (see ``observe_kad_rpcs``)."""

    def __init__(self) -> None:
        self._open: list[list[KadRpc]] = []

    @contextmanager
    def record(self) -> Iterator[list[KadRpc]]:
        """The RPCs sent until the block ends (background refreshes that overlap are included)."""
        sent: list[KadRpc] = []
        self._open.append(sent)
        try:
            yield sent
        finally:
            self._open.remove(sent)

    def note(self, rpc: KadRpc) -> None:
        for sent in self._open:
            sent.append(rpc)


def observe_kad_rpcs(dht: KadDHT) -> KadRpcRecorder:
    """Observation only: count the RPCs KadDHT sends, by wrapping its per-RPC methods.

    KadDHT reports nothing about an operation beyond its result, while parsec stores RPC
    counts beside every duration (design.md, pitfall 10). Each of its RPCs goes through
    one private method per type; the wrapper calls the original unchanged and notes the
    outcome. "answered" is what KadDHT itself can tell: FIND_NODE returned peers,
    GET_PROVIDERS returned providers or peers, ADD_PROVIDER was written (KadDHT never
    learns whether it was stored). A failed dial, a timeout or an empty reply all read
    as not answered; KadDHT logs rather than reports which.
    """
    recorder = KadRpcRecorder()
    _observe(dht.peer_routing, "_query_peer_for_closest", "FIND_NODE", bool, recorder)
    _observe(dht.provider_store, "_get_providers_from_peer_with_closers", "GET_PROVIDERS",
             lambda reply: bool(reply[0] or reply[1]), recorder)
    _observe(dht.provider_store, "_send_add_provider", "ADD_PROVIDER", bool, recorder)
    return recorder


def _observe(owner: object, method: str, kind: str, answered: Callable[[Any], bool],
             recorder: KadRpcRecorder) -> None:
    original = getattr(owner, method)

    async def observed(peer: ID, *args: Any, **kwargs: Any) -> Any:
        ok = False
        try:
            result = await original(peer, *args, **kwargs)
            ok = answered(result)
            return result
        finally:  # cancelled by KadDHT's own per-query timeout: not answered
            recorder.note(KadRpc(kind, peer, ok))

    setattr(owner, method, observed)
