"""Every fleet's provide and first-provider retrieval over real py-libp2p peers on
loopback (no Ray): a 60-peer testbed shard plus one host per fleet."""

import os

import pytest
import trio

from parsec.cids import cid_v0_for
from parsec.kad import PeerRef, closest_peers, key_of
from parsec.kad.estimator import NetworkSizeEstimator
from parsec.net.local import LocalFleets
from parsec.server.runtime import parse_bootstrap
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

pytestmark = pytest.mark.integration

FLEETS = ("default", "optprov", "fullrt")  # our engine's fleets
ALL_FLEETS = (*FLEETS, "pylibp2p")  # plus py-libp2p's KadDHT unchanged


@pytest.fixture(scope="module")
def network():
    shard = PeerShard(ShardSpec(0, 60, seed=7))
    peers = shard.start()
    shard.fill(peers)
    fleets = LocalFleets(ALL_FLEETS, rpc_timeout=5, name="test-fleets")
    try:
        for fleet, size in fleets.join_all(parse_bootstrap([peer_multiaddr(p) for p in peers[::15]])).items():
            assert size > 20 and fleets[fleet].ready(), fleet
        yield fleets.loop, fleets.strategies, peers
    finally:
        fleets.stop()
        shard.stop()


def _everyone(peers, strategies):
    return [PeerRef.from_id(p.peer_id) for p in peers] + [strategies[f].node.me for f in FLEETS]


def test_bootstrap_fills_standard_buckets(network):
    _, strategies, _ = network
    for strategy in (strategies[f] for f in FLEETS):
        assert all(size <= 20 for size in strategy.node.routing.bucket_sizes().values())


def test_fullrt_crawl_found_the_whole_network(network):
    _, strategies, peers = network
    table = strategies["fullrt"].table
    assert table.ready and len(table) >= len(peers)


@pytest.mark.parametrize("fleet", FLEETS)
def test_each_fleet_provides_to_the_true_closest_and_every_fleet_finds_it(network, fleet):
    loop, strategies, peers = network
    _, key = cid_v0_for(os.urandom(1024))
    provider = strategies[fleet]
    trace = loop.run(provider.provide, key)
    targets = set(trace.targets)
    true_closest = {p.peer_id.hex() for p in closest_peers(
        [p for p in _everyone(peers, strategies) if p != provider.node.me], key_of(key), 20)}
    # optprov stops its walk on an estimate of N made from few lookups here, so single
    # provides may miss some of the true closest (bench/fleets.py reports the median)
    assert len(true_closest & targets) >= (10 if fleet == "optprov" else 18), trace.as_dict()
    assert len(trace.holders) >= (6 if fleet == "fullrt" else 15)  # answered after 30 % / 15 / all stores
    assert trace.as_dict()["strategy"] in ("classic", "optimistic", "direct")
    for name, retriever in strategies.items():  # every other fleet, py-libp2p's KadDHT included
        if name == fleet:
            continue
        found, retrieve_trace = loop.run(retriever.find_first_provider, key)
        assert found == provider.node.me.peer_id, (name, retrieve_trace.as_dict())
        detail = retrieve_trace.as_dict()
        assert detail.get("local") or detail.get("hops", 0) >= 1 or detail["rpc_total"] >= 1


def test_a_record_provided_by_pylibp2p_is_found_by_every_engine_fleet(network):
    loop, strategies, _ = network
    _, key = cid_v0_for(os.urandom(1024))
    loop.run(strategies["pylibp2p"].provide, key)
    for fleet in FLEETS:
        found, trace = loop.run(strategies[fleet].find_first_provider, key)
        assert found == strategies["pylibp2p"].dht.host.get_id().to_bytes(), (fleet, trace.as_dict())


def test_optprov_falls_back_to_classic_until_the_estimator_has_data(network):
    loop, strategies, _ = network
    optprov = strategies["optprov"]
    # no data, as a fresh server: the strategy decides with it, the driver feeds it
    estimator = optprov.fleet.estimator = optprov.node.estimator = NetworkSizeEstimator(k=20)
    points = lambda: loop.run_sync(lambda: estimator.points_per_rank(trio.current_time()))  # noqa: E731
    traces = []
    for _ in range(12):
        before = points()
        trace = loop.run(optprov.provide, cid_v0_for(os.urandom(64))[1]).as_dict()
        traces.append((before, trace))
        if before >= 5:
            break
    assert traces[0][1]["fell_back"] is True
    assert all(trace["fell_back"] == (before < 5) for before, trace in traces)
    assert traces[-1][0] >= 5 and traces[-1][1]["network_size_estimate"] > 0


def test_unknown_key_is_not_found(network):
    loop, strategies, _ = network
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    found, trace = loop.run(strategies["default"].find_first_provider, key)
    assert found is None
    assert sum(trace.rpcs.values()) >= 20
