"""py-libp2p's own KadDHT (``parsec.net.stock``) against real testbed peers on loopback (no Ray).

Provider records cross between the two implementations in both directions: py-libp2p's
client stores on our server side and our engine finds it; our engine provides and
py-libp2p's client finds it. Keys are chosen so the retrieving node is not among the 20
closest peers, so every retrieval goes over the network instead of answering locally.
"""

import contextlib
import os

import pytest
import trio
from libp2p.peer.id import ID

from parsec.cids import cid_v0_for
from parsec.kad import PeerRef, closest_peers, key_of
from parsec.loops import TrioThread
from parsec.net import driver, pylibp2p
from parsec.net.node import DhtNode, RpcError
from parsec.net.stock import StockDht, StockError
from parsec.net.strategies import EngineStrategy
from parsec.server.bootstrap import parse_bootstrap
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network():
    shard = PeerShard(ShardSpec(0, 60, seed=11))
    peers = shard.start()
    shard.fill(peers)
    loop = TrioThread("test-stock").start()
    made: dict = {}

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
            stock_host, stock_listen = pylibp2p.create_host(pylibp2p.keypair())
            stock = StockDht(stock_host)  # handler registered before any connection
            await stack.enter_async_context(stock_host.run([stock_listen]))
            await nursery.start(stock.run)
            host, listen = pylibp2p.create_host(pylibp2p.keypair())
            node = DhtNode(host, rpc_timeout=5)
            node.start()
            await stack.enter_async_context(host.run([listen]))
            made.update(stock=stock, node=node)
            task_status.started()
            await trio.sleep_forever()

    loop.start_service(serve)
    stock, node = made["stock"], made["node"]
    boot = parse_bootstrap([peer_multiaddr(p) for p in peers[::15]])
    stock_rt = loop.run(stock.bootstrap, boot)
    assert loop.run(driver.bootstrap, node, boot) > 20
    everyone = [PeerRef.from_id(p.peer_id) for p in peers] + [node.me, PeerRef.from_id(stock.peer_id.to_bytes())]
    yield loop, stock, node, boot, stock_rt, everyone
    loop.stop()
    shard.stop()


def _key_not_held_by(everyone: list[PeerRef], *retrievers: bytes) -> bytes:
    """A fresh multihash key whose 20 closest peers include none of ``retrievers``."""
    while True:
        _, key = cid_v0_for(os.urandom(64))
        holders = {ref.peer_id for ref in closest_peers(everyone, key_of(key), 20)}
        if not holders & set(retrievers):
            return key


def test_stock_bootstraps_to_a_nontrivial_routing_table(network):
    _, stock, _, boot, stock_rt, _ = network
    assert stock_rt >= 20
    assert stock.routing_table_size() >= stock_rt - 2  # stale-peer pings may drop a few, never many
    store = stock.host.get_peerstore()
    for peer in boot:  # host.connect set 120 s; keep_addresses made it permanent (pitfall 5)
        assert store.peer_data_map[ID(peer.peer_id)].get_ttl() == pylibp2p.PERMANENT_TTL


def test_record_provided_by_stock_is_found_by_our_driver(network):
    loop, stock, node, _, _, everyone = network
    key = _key_not_held_by(everyone, node.me.peer_id)
    trace = loop.run(stock.provide, key)
    assert trace["ok"] and trace["operation"] == "provide"
    assert trace["holders"] >= 15 and trace["rpcs"]["ADD_PROVIDER"] >= trace["holders"], trace

    found, retrieve = loop.run(driver.find_first_provider, node, key)
    assert found is not None and found.peer_id == stock.peer_id.to_bytes()
    got = retrieve.as_dict()  # over the network, not from node's own store
    assert not got.get("local") and got["rpcs"].get("GET_PROVIDERS", 0) == got["rpc_total"] >= 1, got
    assert got["hops"] >= 1, got


def test_record_provided_by_our_engine_is_found_by_stock(network):
    loop, stock, node, _, _, everyone = network
    key = _key_not_held_by(everyone, stock.peer_id.to_bytes())
    provided = loop.run(EngineStrategy(node, loop.nursery).provide, key)  # the default fleet: classic provide
    # classic: ADD_PROVIDER to the 20 closest of the 61 other peers (all reachable), answered once all settled
    assert len(provided.targets) == 20 and set(provided.holders) == set(provided.targets), provided.as_dict()

    found, trace = loop.run(stock.find_first_provider, key)
    assert found == node.me.peer_id
    assert trace["ok"] and not trace["local"] and trace["providers"] >= 1
    assert trace["rpcs"].get("GET_PROVIDERS", 0) >= 1, trace


def test_never_provided_key_is_not_found(network):
    loop, stock, _, _, _, _ = network
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    found, trace = loop.run(stock.find_first_provider, key)
    assert found is None
    assert trace["ok"] and trace["providers"] == 0 and trace["rpc_total"] >= 10, trace


def test_forget_leaves_no_connection(network):
    loop, stock, node, _, _, _ = network
    host = stock.host
    connected = loop.run_sync(host.get_connected_peers)
    assert connected, "a bootstrapped KadDHT keeps connections to the peers it asked"
    target = node.peer_id if node.peer_id in connected else connected[0]
    in_table = stock.dht.routing_table.peer_in_table(target)

    loop.run(stock.forget, target.to_bytes())
    assert target not in loop.run_sync(host.get_connected_peers)
    assert bool(pylibp2p.known_addrs(host, target)) == in_table  # kept only for table entries


def test_only_the_hard_coded_protocol_is_accepted():
    host, _ = pylibp2p.create_host(pylibp2p.keypair())
    with pytest.raises(ValueError, match="/ipfs/kad/1.0.0"):
        StockDht(host, protocol_id="/parsec/kad/1.0.0")


def test_provide_that_reaches_nobody_raises_with_its_trace():
    host, _ = pylibp2p.create_host(pylibp2p.keypair())  # never started: no peers at all
    lonely = StockDht(host)
    _, key = cid_v0_for(os.urandom(64))

    async def provide():
        with pytest.raises(StockError, match="reported failure") as failure:
            await lonely.provide(key)
        return failure.value

    error = trio.run(provide)
    assert isinstance(error, RpcError)  # the server's backend reports RpcError as data
    assert error.trace["ok"] is False and error.trace["holders"] == 0
