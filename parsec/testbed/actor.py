"""Testbed shards as plain classes for Ray actors (options applied in parsec.cluster.deploy):
py-libp2p peers in this process, or Go / Node.js peers in a child program."""

from __future__ import annotations

import tempfile

import psutil

from parsec.net.wire import WirePeer
from parsec.net.external import ExternalPeers, command_for
from parsec.testbed.external_churn import ExternalChurn
from parsec.testbed.shard import PeerShard, ShardSpec


def resident_bytes() -> int:
    """RSS of this process and its children (an external program's peers live there)."""
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


class TestbedShardActor:
    __test__ = False

    def __init__(self, spec: ShardSpec) -> None:
        self.shard = PeerShard(spec)

    def start(self) -> list[WirePeer]:
        return self.shard.start()

    def fill(self, everyone: list[WirePeer], ghosts: int = 0, listing: float = 1.0) -> dict:
        return self.shard.fill(everyone, ghosts, listing)

    def start_churn(self) -> bool:
        return self.shard.start_churn()

    def offline(self) -> list[int]:
        return self.shard.offline()

    def holders(self, key: bytes) -> list[bytes]:
        return self.shard.holders(key)

    def stats(self) -> dict:
        return self.shard.stats()

    def start_black_hole(self) -> str:
        return self.shard.start_black_hole()

    def cut_off(self, regions: list[str]) -> int:
        return self.shard.cut_off(regions)

    def memory(self) -> int:
        return resident_bytes()

    def stop(self) -> None:
        self.shard.stop()


class ExternalShardActor:
    """Peers of another implementation (``spec`` says how many), same interface as above."""

    __test__ = False

    def __init__(self, implementation: str, spec: ShardSpec) -> None:
        latency_file = None
        if spec.latency is not None:  # the programs read the shared model from a file
            handle = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="parsec-latency-", delete=False)
            handle.write(spec.latency.as_json())
            handle.close()
            latency_file = handle.name
        prefix = spec.protocol_id.removesuffix("/kad/1.0.0")
        seed = None if spec.seed is None else spec.seed * 1000 + spec.index
        self.spec = spec
        self.churn: ExternalChurn | None = None
        self.peers = ExternalPeers(command_for(implementation), peers=spec.peers, protocol_prefix=prefix,
                                   latency_file=latency_file, seed=seed, name=f"{implementation}-{spec.index}",
                                   host=spec.host)

    def start(self) -> list[WirePeer]:
        return self.peers.start()

    def fill(self, everyone: list[WirePeer], ghosts: int = 0, listing: float = 1.0) -> dict:
        return self.peers.fill(everyone, ghosts, listing)

    def start_churn(self) -> bool:
        """Let peers leave and come back (``spec.churn_session``), as the py shard does,
        seeded the same way; False when it is 0."""
        if self.spec.churn_session <= 0 or self.churn is not None:
            return self.churn is not None
        seed = None if self.spec.seed is None else f"churn/{self.spec.seed}/{self.spec.index}"
        self.churn = ExternalChurn(self.peers, self.spec.churn_session, seed)
        self.churn.start()
        return True

    def offline(self) -> list[int]:
        """Indexes of the peers that left and have not come back (churn)."""
        return [] if self.churn is None else self.churn.offline()

    def stats(self) -> dict:
        return self.peers.stats()

    def provide(self, peer_index: int, key: bytes) -> dict:
        """That implementation's own provide on one of its peers (timed by the program)."""
        return self.peers.provide(peer_index, key)

    def find_first_provider(self, peer_index: int, key: bytes, timeout: float = 60.0) -> dict:
        return self.peers.find_first_provider(peer_index, key, timeout)

    def memory(self) -> int:
        return resident_bytes()

    def stop(self) -> None:
        if self.churn is not None:
            self.churn.stop()
        self.peers.stop()
