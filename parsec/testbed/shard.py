"""Many real py-libp2p DHT peers in one process: one shard of the local testbed.

Each peer is a full libp2p host (TCP + Noise + Yamux on 127.0.0.1) with a ``DhtNode``
answering kad requests. The testbed knows every peer it started, so instead of a network
refresh (45-120 RPCs per peer, design.md) it fills each routing table directly with
standard k-buckets from the known peer set; servers under test still join the honest way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass

import trio

from parsec.kad import PeerRef
from parsec.latency import LatencyModel
from parsec.loops import TrioThread
from parsec.net import pylibp2p
from parsec.net.node import DhtNode
from parsec.net.wire import WirePeer

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


def peer_multiaddr(peer: WirePeer) -> str:
    """``/ip4/…/tcp/…/p2p/<id>``: the form bootstrap lists use."""
    from libp2p.peer.id import ID

    return f"{peer.multiaddrs()[0]}/p2p/{ID(peer.peer_id).to_base58()}"


class PeerShard:
    """A shard of testbed peers living on a trio thread of this process."""

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec
        self.nodes: list[DhtNode] = []
        self._loop = TrioThread(f"testbed-{spec.index}")
        self._stack: contextlib.AsyncExitStack | None = None

    # -- lifecycle (blocking calls from the owning thread / Ray actor) --------------

    def start(self) -> list[WirePeer]:
        """Start the peers; returns their id + listen addresses."""
        self._loop.start()
        self._loop.start_service(self._serve)
        return [node.self_wire() for node in self.nodes]

    def fill(self, everyone: list[WirePeer]) -> dict[str, float]:
        """Fill every routing table with standard k-buckets from the whole peer set."""
        return self._loop.run_sync(self._fill, everyone)

    def stats(self) -> dict[str, float]:
        return self._loop.run_sync(self._stats)

    def start_black_hole(self) -> str:
        """Serve a black hole for the testbed's unreachable peers; returns its address."""
        from parsec.testbed.ghosts import serve_black_hole

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
        async with contextlib.AsyncExitStack() as stack:
            for i in range(self.spec.peers):
                host, listen = pylibp2p.create_host(self._keypair(i), self.spec.host, 0)
                node = DhtNode(host, protocol_id=self.spec.protocol_id, k=self.spec.k, latency=self.spec.latency,
                               answer_delay=self._answer_delay(i))
                node.start()  # protocol registered before any connection
                await stack.enter_async_context(host.run([listen]))
                self.nodes.append(node)
            task_status.started()
            await trio.sleep_forever()

    def _fill(self, everyone: list[WirePeer]) -> dict[str, float]:
        by_id = {peer.peer_id: peer for peer in everyone}
        refs = [PeerRef.from_id(peer.peer_id) for peer in everyone]
        sizes = []
        for node in self.nodes:
            node.routing.fill_from(ref for ref in refs if ref.peer_id != node.me.peer_id)
            for ref in node.routing.peers():
                node.learn(by_id[ref.peer_id])
            sizes.append(len(node.routing))
        return {"peers": len(self.nodes), "mean_rt": sum(sizes) / max(len(sizes), 1)}

    def _stats(self) -> dict[str, float]:
        return {
            "peers": len(self.nodes),
            "inbound_requests": sum(node.inbound_requests for node in self.nodes),
            "provider_records": sum(len(node.providers) for node in self.nodes),
        }
