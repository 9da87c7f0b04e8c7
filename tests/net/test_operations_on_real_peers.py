"""Provide and first-provider retrieval over real py-libp2p peers on loopback (no Ray)."""

import contextlib
import os

import pytest
import trio

from parsec.cids import cid_v0_for
from parsec.kad import PeerRef, closest_peers, key_of
from parsec.loops import TrioThread
from parsec.net import driver, pylibp2p
from parsec.net.node import DhtNode
from parsec.server.runtime import parse_bootstrap
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network():
    shard = PeerShard(ShardSpec(0, 60, seed=7))
    peers = shard.start()
    shard.fill(peers)
    loop = TrioThread("test-clients").start()
    nodes: list[DhtNode] = []

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                host, listen = pylibp2p.create_host(pylibp2p.keypair())
                node = DhtNode(host, rpc_timeout=5)
                node.start()
                await stack.enter_async_context(host.run([listen]))
                nodes.append(node)
            task_status.started()
            await trio.sleep_forever()

    loop.start_service(serve)
    boot = parse_bootstrap([peer_multiaddr(p) for p in peers[::15]])
    for node in nodes:
        assert loop.run(driver.bootstrap, node, boot) > 20
    yield loop, nodes, peers
    loop.stop()
    shard.stop()


def test_bootstrap_fills_standard_buckets(network):
    _, nodes, _ = network
    for node in nodes:
        assert all(size <= 20 for size in node.routing.bucket_sizes().values())


def test_provide_then_first_provider_found_by_another_node(network):
    loop, (provider, retriever), peers = network
    _, key = cid_v0_for(os.urandom(1024))
    trace = loop.run(driver.classic_provide, provider, key)
    assert len(trace.holders) >= 18, trace.as_dict()
    everyone = [PeerRef.from_id(p.peer_id) for p in peers] + [retriever.me]
    true_closest = {p.peer_id.hex() for p in closest_peers(everyone, key_of(key), 20)}
    overlap = len(true_closest & set(trace.holders))
    assert overlap >= 18, (overlap, trace.as_dict())

    found, retrieve_trace = loop.run(driver.find_first_provider, retriever, key)
    assert found is not None and found.peer_id == provider.me.peer_id
    assert retrieve_trace.hops >= 1 and sum(retrieve_trace.rpcs.values()) >= 1


def test_unknown_key_is_not_found(network):
    loop, (_, retriever), _ = network
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    found, trace = loop.run(driver.find_first_provider, retriever, key)
    assert found is None
    assert sum(trace.rpcs.values()) >= 20
