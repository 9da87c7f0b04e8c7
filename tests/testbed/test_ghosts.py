"""Unreachable (ghost) and slow testbed peers: what a dial to a ghost costs, and lookups
that still finish around them."""

from __future__ import annotations

import os

import pytest
import trio

from parsec.cids import cid_v0_for
from parsec.net import wire
from parsec.net.local import LocalFleets
from parsec.net.node import DhtNode, RpcError
from parsec.server.bootstrap import parse_bootstrap
from parsec.testbed.ghosts import ghost_count, ghosts
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr


def test_ghost_count_gives_the_unreachable_share():
    assert ghost_count(100, 0.0) == 0
    assert ghost_count(110, 0.45) == 90  # 90 of 200 = 45 %
    with pytest.raises(ValueError):
        ghost_count(10, 1.0)


@pytest.mark.integration
def test_dials_to_ghosts_cost_the_dial_timeout_and_lookups_still_finish():
    shard = PeerShard(ShardSpec(0, 30, seed=5, slow_fraction=0.2, slow_delay=0.2))
    live = shard.start()
    hole = shard.start_black_hole()
    dead = ghosts(20, hole, seed=5)
    shard.fill(live + dead)
    fleets = LocalFleets(["default"], rpc_timeout=3, name="ghost-client")
    strategy = fleets["default"]
    strategy.node.dial_timeout = 0.5

    async def dial_ghost():
        node: DhtNode = strategy.node
        target = node.learn(dead[0])
        started = trio.current_time()
        with pytest.raises(RpcError, match="dial timeout"):
            await node.rpc(target, wire.request(wire.PING, b""))
        return trio.current_time() - started

    loop = fleets.loop
    try:
        assert loop.run(strategy.join, parse_bootstrap([peer_multiaddr(p) for p in live[::10]])) > 10
        waited = loop.run(dial_ghost)
        assert 0.45 <= waited < 1.5
        _, key = cid_v0_for(os.urandom(64))
        trace = loop.run(strategy.provide, key)
        assert trace.as_dict()["stores_ok"] >= 5  # stores to ghosts fail, live ones land
        assert not set(trace.holders) & {ghost.peer_id.hex() for ghost in dead}
        slow = [node for node in shard.nodes if node.answer_delay]
        assert len(slow) == 6 and all(node.answer_delay == 0.2 for node in slow)
    finally:
        fleets.stop()
        shard.stop()
