"""Every fleet's provide and first-provider retrieval over real py-libp2p peers on
loopback (no Ray): a 60-peer testbed shard plus one host per fleet."""

import os
import time

import pytest
import trio

from parsec.cids import cid_v0_for
from parsec.kad import PeerRef, closest_peers, key_of, normalized_distance
from parsec.kad.estimator import NetworkSizeEstimator
from parsec.net import driver
from parsec.net.local import LocalFleets
from parsec.server.bootstrap import parse_bootstrap
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

pytestmark = pytest.mark.integration

FLEETS = ("default", "optprov", "fullrt")  # our engine's fleets
ALL_FLEETS = (*FLEETS, "pylibp2p")  # plus py-libp2p's KadDHT unchanged
STRATEGY = {"default": "classic", "optprov": "optimistic", "fullrt": "direct"}


@pytest.fixture(scope="module")
def network():
    shard = PeerShard(ShardSpec(0, 60, seed=7))
    peers = shard.start()
    shard.fill(peers)
    fleets = LocalFleets(ALL_FLEETS, rpc_timeout=5, name="test-fleets")
    try:
        for fleet, size in fleets.join_all(parse_bootstrap([peer_multiaddr(p) for p in peers[::15]])).items():
            assert size > 20 and fleets[fleet].ready(), fleet
        for _ in range(3):  # on a starved CPU a crawl request may time out (5 s): the tests want a full crawl
            if not fleets["fullrt"].fleet.table.last_crawl.timeouts:
                break
            fleets.run(fleets["fullrt"].upkeep, "crawl")
        yield fleets.loop, fleets.strategies, peers, shard
    finally:
        fleets.stop()
        shard.stop()


def _stock_id(strategies) -> bytes:
    return strategies["pylibp2p"].dht.host.get_id().to_bytes()


def _everyone(peers, strategies):
    """Every DHT server of the network: the shard's peers and the four fleets' hosts."""
    return ([PeerRef.from_id(p.peer_id) for p in peers] + [strategies[f].node.me for f in FLEETS]
            + [PeerRef.from_id(_stock_id(strategies))])


def _holds(loop, strategy, key: bytes) -> bool:
    """Whether an engine fleet's host holds a provider record for ``key`` in its own store."""
    return loop.run_sync(lambda: bool(strategy.node.providers.get(key, time.time())))


def _holding(loop, strategies, shard, key: bytes) -> set[str]:
    """Ids (hex) of the peers holding a provider record for ``key``: where it really landed
    (the shard's peers and the engine fleets' hosts)."""
    engine = {strategies[f].node.me.peer_id for f in FLEETS if _holds(loop, strategies[f], key)}
    return {peer_id.hex() for peer_id in {*shard.holders(key), *engine}}


def _train_estimator(loop, optprov) -> None:
    """Provides (classic while the estimator lacks data) until the estimator has its
    5 points per rank, so that the provide under test is an optimistic one."""
    points = lambda: loop.run_sync(lambda: optprov.fleet.estimator.points_per_rank(trio.current_time()))  # noqa: E731
    for _ in range(12):
        if points() >= 5:
            return
        loop.run(optprov.provide, cid_v0_for(os.urandom(64))[1])
    assert points() >= 5


def test_bootstrap_fills_standard_buckets(network):
    _, strategies, _, _ = network
    for strategy in (strategies[f] for f in FLEETS):
        assert all(size <= 20 for size in strategy.node.routing.bucket_sizes().values())


def test_fullrt_crawl_found_the_whole_network(network):
    _, strategies, peers, _ = network
    table = strategies["fullrt"].fleet.table
    assert table.ready
    crawl = table.last_crawl
    missing = {PeerRef.from_id(p.peer_id) for p in peers} - set(table.peers())  # every testbed peer is in it
    assert not missing, (len(missing), crawl.errors, crawl.failures, crawl.timeouts, len(crawl.reachable))
    assert strategies["fullrt"].node.me not in set(table.peers())


def _provide_and_settle(loop, provider, key: bytes, monkeypatch):
    """(trace when the caller was answered, the operation's result once every store settled,
    background ones included)."""
    operations = []
    run_provide = driver.run_provide

    async def keep(node, op, *args, **kwargs):
        operations.append(op)
        return await run_provide(node, op, *args, **kwargs)

    monkeypatch.setattr(driver, "run_provide", keep)
    trace = loop.run(provider.provide, key)
    (op,) = operations
    deadline = time.monotonic() + 30
    while not loop.run_sync(lambda: op.done) and time.monotonic() < deadline:
        time.sleep(0.1)
    return trace, loop.run_sync(lambda: op.result)


@pytest.mark.parametrize("fleet", FLEETS)
def test_each_fleet_provides_to_the_true_closest_and_every_fleet_finds_it(network, fleet, monkeypatch):
    loop, strategies, peers, shard = network
    provider = strategies[fleet]
    if fleet == "optprov":
        _train_estimator(loop, provider)
    _, key = cid_v0_for(os.urandom(1024))
    trace, final = _provide_and_settle(loop, provider, key, monkeypatch)
    detail = trace.as_dict()
    targets, holders = set(trace.targets), set(trace.holders)
    final_targets = {p.peer_id.hex() for p in final.store_targets}
    final_holders = {p.peer_id.hex() for p in final.holders}
    stock = _stock_id(strategies).hex()
    others = [p for p in _everyone(peers, strategies) if p != provider.node.me]
    true_closest = {p.peer_id.hex() for p in closest_peers(others, key_of(key), 20)}
    # py-libp2p's KadDHT host joined last: fullrt crawled before it existed, and a testbed
    # peer lists it only once it asked that peer; where it is missed the 21st peer stands in
    known = [p for p in others if p.peer_id.hex() != stock or stock in targets]
    known_closest = {p.peer_id.hex() for p in closest_peers(known, key_of(key), 20)}
    assert true_closest - {stock} <= known_closest
    facts = f"{fleet}: {detail}; final {final}"

    assert detail["strategy"] == STRATEGY[fleet] and detail["fell_back"] is False, facts
    assert final.finished_at is not None, facts  # every store settled, in the background too
    assert final.stores_ok + final.stores_failed == len(final_targets) and final.stores_abandoned == 0, facts
    assert holders <= targets <= final_targets and holders <= final_holders <= final_targets, facts
    assert detail["stores_ok"] == len(holders), facts
    # Loopback, every peer reachable: a request fails only on a starved machine (none, mostly).
    # Where one fails, that peer is left out; every true-closest peer missing must be such a one.
    if fleet == "default":  # lookup of the 20 closest, then ADD_PROVIDER to them all; answers when all settled
        assert targets == final_targets and len(targets) == 20 and detail["rpcs"]["ADD_PROVIDER"] == 20, facts
        assert len(known_closest - targets) <= detail["failures"], facts
        assert holders == final_holders and len(holders) + final.stores_failed == 20, facts
        # exhausted: asked every peer it heard of (on 64 peers a normal end, not a failure)
        assert detail["walk_end"] in ("converged", "exhausted") and detail["rpcs"]["FIND_NODE"] >= 20, facts
    elif fleet == "fullrt":  # the 20 closest of the crawled table, straight away; answers after 30 %
        table = strategies["fullrt"].fleet.table.peers()
        assert targets == final_targets == {p.peer_id.hex() for p in closest_peers(table, key_of(key), 20)}, facts
        assert targets == known_closest and detail["rpcs"] == {"ADD_PROVIDER": 20}, facts  # the crawl found all
        assert len(holders) >= 6, facts
    else:  # optimistic: answers after 15 successful stores, the rest in the background
        assert len(holders) >= 15, facts
        individual, set_ = final.thresholds
        # the trained estimator's N (the thresholds are 14.53/N and 15.41/N) is near the 64
        # servers here, within a factor 2: from ~20 lookups of a 64-peer network the estimate
        # spreads wide (on tests/kad's SimNet(64), 120 seeds: 43 to 86, 9 of them outside
        # ±25 %, the bound this test had and failed at once in a full run). The trace's
        # network_size_estimate is read after this provide's own lookup fed the estimator,
        # so it may differ from the N the provide decided with
        assert individual / set_ == pytest.approx(14.53 / 15.41, rel=1e-3), facts
        assert 32 <= 14.53 / individual <= 128 and detail["network_size_estimate"] > 0, facts
        distances = {p.peer_id.hex(): normalized_distance(p.key, key_of(key)) for p in final.store_targets}
        # the walk's end decides where the record goes
        if final.walk_end == "converged":  # the refill found every one of the true closest
            failed = final.lookup.failures + final.lookup.timeouts
            assert len(true_closest - {stock} - final_targets) <= failed, facts
        elif final.walk_end == "set_threshold":  # the 20 closest that answered were close enough
            closest = final.lookup.closest
            assert len(closest) == 20 and {p.peer_id.hex() for p in closest} <= final_targets, facts
            assert sum(normalized_distance(p.key, key_of(key)) for p in closest) / 20 < set_, facts
        else:  # 20 stores decided during the walk, each below the individual threshold
            assert final.walk_end == "enough_stores" and final.early_stores >= 20, facts
        early = sorted(distances.values())[:final.early_stores]
        assert all(d < individual for d in early), facts  # stores at once only below the threshold
    # every store that succeeded really landed (py-libp2p's KadDHT host is not checked: its
    # ADD_PROVIDER rate limit may drop a record silently)
    must_hold = final_holders - {stock}
    deadline = time.monotonic() + 20
    while not must_hold <= (holding := _holding(loop, strategies, shard, key)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert must_hold <= holding, f"{sorted(must_hold - holding)} hold no record; {facts}"

    for name, retriever in strategies.items():  # every other fleet, py-libp2p's KadDHT included
        if name == fleet:
            continue
        engine = name in FLEETS
        held = engine and _holds(loop, retriever, key)
        found, retrieve_trace = loop.run(retriever.find_first_provider, key)
        assert found == provider.node.me.peer_id, (name, retrieve_trace.as_dict())
        got = retrieve_trace.as_dict()
        if got.get("local"):  # answered from its own store, without a message
            assert got["rpc_total"] == 0 and (not engine or _holds(loop, retriever, key)), (name, got)
        else:  # a walk that asked the network for the record
            assert not held, (name, got)  # a host holding the record answers from its store first
            assert got["rpcs"].get("GET_PROVIDERS", 0) >= 1, (name, got)
            if engine:
                assert got["rpc_total"] == got["rpcs"]["GET_PROVIDERS"] == got["peers_contacted"], (name, got)
                assert got["hops"] >= 1, (name, got)
            else:
                assert got["providers"] >= 1, (name, got)


def test_a_record_provided_by_pylibp2p_is_found_by_every_engine_fleet(network):
    loop, strategies, _, _ = network
    _, key = cid_v0_for(os.urandom(1024))
    loop.run(strategies["pylibp2p"].provide, key)
    for fleet in FLEETS:
        found, trace = loop.run(strategies[fleet].find_first_provider, key)
        assert found == _stock_id(strategies), (fleet, trace.as_dict())


def test_optprov_falls_back_to_classic_until_the_estimator_has_data(network):
    loop, strategies, _, _ = network
    optprov = strategies["optprov"]
    # no data, as a fresh server: the strategy decides with it, the driver feeds it
    estimator = optprov.fleet.estimator = NetworkSizeEstimator(k=20)
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
    loop, strategies, _, _ = network
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    found, trace = loop.run(strategies["default"].find_first_provider, key)
    assert found is None
    assert sum(trace.rpcs.values()) >= 20
