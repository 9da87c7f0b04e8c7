"""A testbed shard as a plain class for a Ray actor (options applied in parsec.deploy)."""

from __future__ import annotations

from parsec.net.wire import WirePeer
from parsec.testbed.shard import PeerShard, ShardSpec


class TestbedShardActor:
    __test__ = False

    def __init__(self, spec: ShardSpec) -> None:
        self.shard = PeerShard(spec)

    def start(self) -> list[WirePeer]:
        return self.shard.start()

    def fill(self, everyone: list[WirePeer]) -> dict:
        return self.shard.fill(everyone)

    def stats(self) -> dict:
        return self.shard.stats()

    def stop(self) -> None:
        self.shard.stop()
