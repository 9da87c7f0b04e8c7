"""Unreachable (ghost) and slow testbed peers: what a dial to a ghost costs, and lookups
that still finish around them."""

from __future__ import annotations

import contextlib
import os

import pytest
import trio

from parsec.cids import cid_v0_for
from parsec.loops import TrioThread
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode, RpcError
from parsec.net.strategies import make_strategy
from parsec.server.runtime import parse_bootstrap
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
    loop = TrioThread("ghost-client").start()
    box = {}

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack:
            background = await stack.enter_async_context(trio.open_nursery())
            host, listen = pylibp2p.create_host(pylibp2p.keypair())
            box["s"] = strategy = make_strategy("default", host, background, protocol_id="/ipfs/kad/1.0.0",
                                                rpc_timeout=3)
            strategy.node.dial_timeout = 0.5
            await stack.enter_async_context(host.run([listen]))
            task_status.started()
            await trio.sleep_forever()

    async def dial_ghost():
        node: DhtNode = box["s"].node
        target = node.learn(dead[0])
        started = trio.current_time()
        with pytest.raises(RpcError, match="dial timeout"):
            await node.rpc(target, wire.request(wire.PING, b""))
        return trio.current_time() - started

    try:
        loop.start_service(serve)
        strategy = box["s"]
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
        loop.stop()
        shard.stop()
