"""Many real py-libp2p DHT peers in one process: one shard of the local testbed.

Each peer is a full libp2p host (TCP + Noise + Yamux on 127.0.0.1) with a ``DhtNode``
answering kad requests. The testbed knows every peer it started, so instead of a network
refresh (a self-lookup and a lookup per non-empty bucket, for every peer; design.md) it
fills each routing table directly with standard k-buckets from the known peer set; servers
under test still join the honest way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from dataclasses import dataclass

import trio

from parsec.kad import PeerRef
from parsec.loops import TrioThread, freeze_long_lived
from parsec.model.churn import ChurnSchedule
from parsec.model.latency import LatencyModel
from parsec.model.stale import lists
from parsec.net import pylibp2p
from parsec.net.driver import Trace, run_lookup
from parsec.net.node import DhtNode
from parsec.net.wire import WirePeer
from parsec.testbed.ghosts import serve_black_hole

log = logging.getLogger("parsec.testbed")


@dataclass(frozen=True)
class ShardSpec:
    """What one shard starts: how many peers, where, and the DHT protocol."""

    index: int
    peers: int
    host: str = "127.0.0.1"
    protocol_id: str = "/ipfs/kad/1.0.0"
    k: int = 20
    seed: int | None = None
    latency: LatencyModel | None = None  # WAN emulation shared by every peer of the testbed
    slow_fraction: float = 0.0  # share of peers that answer late
    slow_delay: float = 0.0     # how late, in seconds, on top of the latency model
    churn_session: float = 0.0  # median online session and offline gap, seconds (0: no churn)


def peer_multiaddr(peer: WirePeer) -> str:
    """``/ip4/…/tcp/…/p2p/<id>``: the form bootstrap lists use."""
    from libp2p.peer.id import ID

    return f"{peer.multiaddrs()[0]}/p2p/{ID(peer.peer_id).to_base58()}"


class PeerShard:
    """A shard of testbed peers living on a trio thread of this process.

    Each peer runs in its own task so that it can leave (its host closes: dials to it are
    refused, other tables keep its entry) and come back with the same key and port
    (``parsec.model.churn``).
    """

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec
        self.nodes: list[DhtNode] = []
        self._keys: list = []
        self._ports: list[int] = []
        self._leave: list[trio.Event] = []
        self._by_id: dict[bytes, WirePeer] = {}
        self._refs: list[PeerRef] = []  # the fill list's reachable peers
        self._ghost_refs: list[PeerRef] = []  # and its unreachable ids
        self._listing = 1.0  # the chance that a table lists a given unreachable id
        self._churn: ChurnSchedule | None = None
        self._loop = TrioThread(f"testbed-{spec.index}")

    # -- lifecycle (blocking calls from the owning thread / Ray actor) --------------

    def start(self) -> list[WirePeer]:
        """Start the peers; returns their id + listen addresses."""
        self._loop.start()
        self._loop.start_service(self._serve)
        return [node.self_wire() for node in self.nodes]

    def fill(self, everyone: list[WirePeer], ghosts: int = 0, listing: float = 1.0) -> dict[str, float]:
        """Fill every routing table with standard k-buckets from the whole peer set; its
        last ``ghosts`` entries are unreachable ids, each of which a table lists with
        probability ``listing`` (``parsec.model.stale``). The tables are long-lived: frozen out of
        the garbage collector's scans afterwards (``freeze_long_lived``)."""
        filled = self._loop.run_sync(self._fill, everyone, ghosts, listing)
        freeze_long_lived()
        return filled

    def start_churn(self) -> bool:
        """Let peers leave and come back (``spec.churn_session``); False when it is 0."""
        if self.spec.churn_session <= 0:
            return False
        self._loop.run_sync(lambda: self._loop.nursery.start_soon(self._run_churn))
        return True

    def stats(self) -> dict[str, float]:
        return self._loop.run_sync(self._stats)

    def offline(self) -> list[int]:
        """Indexes of the peers that left and have not come back (churn)."""
        return self._loop.run_sync(self._offline)

    def holders(self, key: bytes) -> list[bytes]:
        """Ids of this shard's peers holding a provider record for the multihash ``key``:
        where a provide's records really landed (benchmarks judge strategies by it)."""
        now = time.time()
        return self._loop.run_sync(lambda: [node.me.peer_id for node in self.nodes if node.providers.get(key, now)])

    def cut_off(self, regions: list[str]) -> int:
        """Cut these regions off (``[]`` restores them): every kad message of this shard's
        peers to or from them is dropped. Returns how many of this shard's peers are in them."""
        model = self.spec.latency
        if model is None:
            raise ValueError("this testbed emulates no latency, so its peers have no regions to cut off")
        model.cut_off(regions)
        return sum(1 for node in self.nodes if node.region in model.outage.regions)

    def start_black_hole(self) -> str:
        """Serve a black hole for the testbed's unreachable peers; returns its address."""
        return self._loop.start_service(serve_black_hole, self.spec.host)

    def stop(self) -> None:
        self._loop.stop()

    # -- on the trio thread ------------------------------------------------------

    def _answer_delay(self, i: int) -> float:
        """Every ⌈1/fraction⌉-th peer is slow: deterministic, spread over the shard."""
        fraction = self.spec.slow_fraction
        if fraction <= 0 or self.spec.slow_delay <= 0:
            return 0.0
        return self.spec.slow_delay if int((i + 1) * fraction) > int(i * fraction) else 0.0

    def _keypair(self, i: int):
        if self.spec.seed is None:
            return pylibp2p.keypair()
        seed = hashlib.sha256(f"{self.spec.seed}/{self.spec.index}/{i}".encode()).digest()
        return pylibp2p.keypair(seed)

    async def _serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._peers = nursery
            for i in range(self.spec.peers):
                self._keys.append(self._keypair(i))
                self._leave.append(trio.Event())
                node = await nursery.start(self._run_peer, i, 0)
                self.nodes.append(node)
                self._ports.append(int(node.addrs()[0].value_for_protocol("tcp")))
            task_status.started()

    async def _run_peer(self, i: int, port: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """One peer, online until its leave event is set; the host closes on the way out."""
        host, listen = pylibp2p.create_host(self._keys[i], self.spec.host, port)
        node = DhtNode(host, protocol_id=self.spec.protocol_id, k=self.spec.k, latency=self.spec.latency,
                       answer_delay=self._answer_delay(i))
        node.start()  # protocol registered before any connection
        async with host.run([listen]):
            task_status.started(node)
            await self._leave[i].wait()

    async def _rejoin(self, i: int) -> None:
        """Peer ``i`` comes back: same key and port, a table from the testbed's peer set
        (what a restarted node knows), then a self-lookup, so that the peers it asks list
        it again."""
        self._leave[i] = trio.Event()
        try:
            node = await self._peers.start(self._run_peer, i, self._ports[i])
        except OSError as error:  # the port was taken meanwhile: the peer stays away
            log.warning("testbed peer %d could not come back: %s", i, error)
            return
        self.nodes[i] = node
        self._fill_one(node)
        with contextlib.suppress(Exception):
            await run_lookup(node, node.me.peer_id, Trace("rejoin"))

    async def _run_churn(self) -> None:
        seed = None if self.spec.seed is None else f"churn/{self.spec.seed}/{self.spec.index}"
        schedule = self._churn = ChurnSchedule(len(self.nodes), self.spec.churn_session,
                                               now=trio.current_time(), rng=random.Random(seed))
        while (at := schedule.next_at()) is not None:
            await trio.sleep_until(at)
            for transition in schedule.due(trio.current_time()):
                if transition.online:
                    self._peers.start_soon(self._rejoin, transition.index)
                else:
                    self._leave[transition.index].set()

    def _fill(self, everyone: list[WirePeer], ghosts: int, listing: float) -> dict[str, float]:
        self._by_id = {peer.peer_id: peer for peer in everyone}
        refs = [PeerRef.from_id(peer.peer_id) for peer in everyone]  # hashed once, not per node
        split = len(refs) - ghosts
        self._refs, self._ghost_refs, self._listing = refs[:split], refs[split:], listing
        sizes = [self._fill_one(node) for node in self.nodes]
        return {"peers": len(self.nodes), "mean_rt": sum(sizes) / max(len(sizes), 1)}

    def _fill_one(self, node: DhtNode) -> int:
        me = node.me.peer_id
        listed = [ref for ref in self._ghost_refs if lists(me, ref.peer_id, self._listing)]
        node.routing.fill_from(ref for ref in self._refs + listed if ref.peer_id != me)
        for ref in node.routing.peers():
            node.learn(self._by_id[ref.peer_id])
        return len(node.routing)

    def _offline(self) -> list[int]:
        churn = self._churn
        return [] if churn is None else [i for i in range(len(self.nodes)) if not churn.online(i)]

    def _stats(self) -> dict[str, float]:
        churn = self._churn
        return {
            "peers": len(self.nodes),
            "online": len(self.nodes) - (churn.offline_count if churn else 0),
            "left": churn.leaves if churn else 0,
            "came_back": churn.returns if churn else 0,
            "inbound_requests": sum(node.inbound_requests for node in self.nodes),
            "provider_records": sum(len(node.providers) for node in self.nodes),
        }
