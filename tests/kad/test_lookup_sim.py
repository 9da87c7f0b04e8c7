"""Lookups over a simulated 1,000-peer DHT (virtual clock, see simnet.py)."""

import random
import statistics

import pytest

from parsec.kad import KEY_BITS, RoutingTable

from .simnet import SimNet, SimPeer

LOOKUPS = 40


@pytest.fixture(scope="module")
def net() -> SimNet:
    return SimNet(1000, seed=7)


@pytest.fixture(scope="module")
def faulty_net() -> SimNet:
    # 30 % faulty peers: 20 % never answer (timeouts), 10 % answer with an error. Each
    # routing table still lists a fifth of them (stale entries).
    return SimNet(1000, seed=11, dead=0.2, failing=0.1, stale=0.2)


def cases(net: SimNet, seed: int, count: int = LOOKUPS) -> list[tuple[SimPeer, int]]:
    """``count`` (live origin, random target) pairs, reproducible whatever ran before."""
    rng = random.Random(seed)
    live = net.live
    return [(net.peers[rng.choice(live)], rng.getrandbits(KEY_BITS)) for _ in range(count)]


def test_closest_lookup_converges_to_the_true_20_closest(net: SimNet) -> None:
    hops = []
    for origin, target in cases(net, 1):
        result = net.run(net.start_lookup(origin, target)).result
        assert result.closest == net.true_closest(target, 20, exclude=origin.ref)
        assert result.reason == "converged" and result.found and not result.exhausted
        assert result.rpcs < 100 and result.failures == result.timeouts == 0
        hops.append(result.hops)
    assert min(hops) >= 1 and statistics.median(hops) >= 2  # real multi-hop routing


def test_without_followup_the_walk_still_finds_the_true_beta_closest(net: SimNet) -> None:
    for origin, target in cases(net, 2):
        result = net.run(net.start_lookup(origin, target, followup="off")).result
        assert result.closest[:3] == net.true_closest(target, 3, exclude=origin.ref)
        assert result.followup_rpcs == 0


@pytest.mark.parametrize("alpha", [1, 3, 10])
def test_never_more_than_alpha_requests_in_flight_during_the_walk(net: SimNet, alpha: int) -> None:
    for origin, target in cases(net, 3, 10):
        walk_only = net.run(net.start_lookup(origin, target, alpha=alpha, followup="off"))
        assert walk_only.max_in_flight <= alpha
        with_followup = net.run(net.start_lookup(origin, target, alpha=alpha))
        assert with_followup.max_in_flight_walk <= alpha
        assert with_followup.max_in_flight <= net.k  # go's followup asks the rest of the top k at once
        assert len(set(with_followup.sent)) == len(with_followup.sent)  # nobody asked twice
        assert origin.ref not in with_followup.sent
    if alpha > 1:
        assert walk_only.max_in_flight == alpha  # the concurrency is actually used


def test_providers_lookup_stops_at_the_first_record(net: SimNet) -> None:
    rng = random.Random(4)
    for origin, target in cases(net, 4, 20):
        provider = rng.choice(net.live)
        holders = net.provide(target, provider)
        if origin.ref in holders:
            continue  # the origin would have the record itself
        trace = net.run(net.start_lookup(origin, target, goal="providers"))
        full = net.run(net.start_lookup(origin, target)).result
        found = trace.result
        assert found.reason == "found" and found.found and found.providers == [provider]
        assert found.hops >= 1 and found.followup_rpcs == 0
        assert found.rpcs < full.rpcs
        assert found.finished_at == found.first_provider_at
        assert found.duration < full.duration


def test_providers_lookup_without_a_record_ends_not_found(net: SimNet) -> None:
    for origin, target in cases(net, 5, 10):
        result = net.run(net.start_lookup(origin, target, goal="providers")).result
        assert result.reason == "converged" and not result.found and result.providers == []
        assert result.closest == net.true_closest(target, 20, exclude=origin.ref)


def test_faulty_peers_do_not_stall_refill_lookups(faulty_net: SimNet) -> None:
    net = faulty_net
    timeouts = failures = 0
    for origin, target in cases(net, 6):
        result = net.run(net.start_lookup(origin, target, rpc_timeout=1.0, followup="refill")).result
        truth = set(net.true_closest(target, 20, live_only=True, exclude=origin.ref))
        assert len(truth & set(result.closest)) >= 18
        assert set(result.closest) <= set(net.live)
        assert result.duration < 10.0
        timeouts += result.timeouts
        failures += result.failures
    assert timeouts > 0 and failures > 0


def test_faulty_peers_do_not_stall_go_style_lookups(faulty_net: SimNet) -> None:
    net = faulty_net
    for origin, target in cases(net, 7):
        result = net.run(net.start_lookup(origin, target, rpc_timeout=1.0)).result
        truth = net.true_closest(target, 20, live_only=True, exclude=origin.ref)
        assert result.reason in ("converged", "exhausted") and result.found
        assert set(result.closest) <= set(net.live)
        assert result.closest[0] == truth[0]
        assert result.duration < 10.0


def test_tiny_network_is_exhausted() -> None:
    net = SimNet(3, seed=1)
    origin = net.random_live_peer()
    result = net.run(net.start_lookup(origin, 12345)).result
    assert result.exhausted and result.found
    assert result.closest == net.true_closest(12345, 20, exclude=origin.ref)
    assert len(result.closest) == 2


def test_lookup_among_dead_peers_ends_after_one_timeout() -> None:
    net = SimNet(6, seed=2)
    origin = net.random_live_peer()
    for peer in net.peers.values():
        if peer is not origin:
            peer.behaviour = "dead"
    result = net.run(net.start_lookup(origin, 777, rpc_timeout=2.0)).result
    assert result.exhausted and not result.found
    assert result.timeouts == result.rpcs == 5
    assert result.duration == 2.0


def test_a_lone_peer_has_nobody_to_ask() -> None:
    net = SimNet(1, seed=3)
    lookup = net.start_lookup(net.random_live_peer(), 99)
    assert lookup.done and lookup.result.exhausted and not lookup.result.found


class CountedKey(int):
    """A lookup target that counts the XOR distances computed with it."""

    xors = 0

    def __xor__(self, other: int) -> int:
        CountedKey.xors += 1
        return int.__xor__(self, other)

    __rxor__ = __xor__


def test_a_lookup_computes_each_distance_once(net: SimNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk keeps its candidates sorted by distance: one distance per peer heard of,
    not a re-sort of every candidate at each answer (which would make a lookup quadratic).
    Only the lookup's own work is counted: the simulated peers answer with a plain key.
    (Speed itself is bench/'s business: timing asserts flake on a loaded machine.)"""
    closest = RoutingTable.closest
    monkeypatch.setattr(RoutingTable, "closest", lambda table, target, n: closest(table, int(target), n))
    for origin, target in cases(net, 8, 20):
        CountedKey.xors = 0
        result = net.run(net.start_lookup(origin, CountedKey(target))).result
        assert result.closest == net.true_closest(target, 20, exclude=origin.ref)
        assert CountedKey.xors == result.peers_seen, (CountedKey.xors, result.peers_seen)
        # every peer heard of is a seed or was named by an answer (k at most each)
        assert result.peers_seen <= net.k * (1 + result.responses)
