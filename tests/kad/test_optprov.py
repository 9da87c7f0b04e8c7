"""Provide strategies: driven by hand event by event, then on the simulated 1,000-peer DHT.

By hand, the key is 0 and peer ``P(i)`` sits at normalised distance ``i * UNIT``, so
thresholds read as peer numbers: ``(5.5 * UNIT, ...)`` means P(1)..P(5) are "close".
"""

import random
import statistics

import pytest

from parsec.kad import (
    KEY_BITS,
    BackgroundPool,
    ClassicProvide,
    NetworkSizeEstimator,
    OptimisticProvide,
    PeerRef,
    ProvideOperation,
    Request,
    bucket_fill_for,
)

from .simnet import SimNet, run_provide

UNIT_BITS = 236
UNIT = 2.0 ** (UNIT_BITS - KEY_BITS)  # the normalised distance of P(1)


def P(i: int) -> PeerRef:
    return PeerRef(b"peer-%d" % i, i << UNIT_BITS)


def Ps(*numbers: int) -> list[PeerRef]:
    return [P(i) for i in numbers]


def kinds(requests: list[Request]) -> dict[str, list[PeerRef]]:
    by_kind: dict[str, list[PeerRef]] = {}
    for request in requests:
        by_kind.setdefault(request.kind, []).append(request.peer)
    return by_kind


def optimistic(seeds: list[PeerRef], thresholds, **options) -> OptimisticProvide:
    return OptimisticProvide(0, seeds, now=0.0, estimator_thresholds=thresholds, **options)


STOP_AT_ONCE = (0.5 * UNIT, 100.0 * UNIT)  # nobody "close"; any 20 seeds satisfy the set rule


def stores_sent_at_once(**options) -> tuple[OptimisticProvide, list[PeerRef]]:
    """An optimistic provide whose 20 seeds end the walk at once: 20 ADD_PROVIDERs out."""
    op = optimistic(Ps(*range(1, 21)), STOP_AT_ONCE, **options)
    requests = kinds(op.poll(0.0))
    assert list(requests) == ["add_provider"] and len(requests["add_provider"]) == 20
    return op, requests["add_provider"]


# ---------------------------------------------------------------- by hand


def test_close_peers_get_the_record_during_the_walk() -> None:
    op = optimistic(Ps(3, 8, 30, 40, 50), (5.5 * UNIT, 1.0 * UNIT), alpha=2)
    first = kinds(op.poll(0.0))
    assert first == {"find_node": Ps(3, 8), "add_provider": Ps(3)}
    op.on_response(P(8), Ps(1, 9, 60), 0.1)  # names P(1): close, store at once
    assert kinds(op.poll(0.1)) == {"find_node": Ps(1), "add_provider": Ps(1)}
    op.on_store_done(P(3), True, 0.2)
    assert not op.returnable  # the walk is still running
    result = op.result
    assert result.early_stores == 2 and result.holders == Ps(3) and not result.fell_back
    assert result.strategy == "optimistic" and result.walk_end is None


def test_set_threshold_ends_the_walk_then_the_rest_of_the_k_closest_get_stores() -> None:
    seeds = Ps(*range(10, 30))  # mean distance 19.5 units
    op = optimistic(seeds, (12.5 * UNIT, 15.0 * UNIT))
    first = kinds(op.poll(0.0))
    assert first["add_provider"] == Ps(10, 11, 12)
    op.on_response(P(10), Ps(*range(1, 8)), 0.1)  # now the mean of the 20 closest is 11.5
    assert op.result.walk_end == "set_threshold"
    second = kinds(op.poll(0.1))
    assert list(second) == ["add_provider"]  # no more FIND_NODE
    # The 20 closest known: 1..7 and 10..22; 10..12 were stored on already.
    assert second["add_provider"] == Ps(*range(1, 8), *range(13, 23))
    assert op.result.rpcs == {"find_node": 10, "add_provider": 20}


def test_k_stores_end_the_walk() -> None:
    op = optimistic(Ps(*range(1, 26)), (30.0 * UNIT, 0.5 * UNIT))  # everyone is "close"
    requests = kinds(op.poll(0.0))
    assert requests["add_provider"] == Ps(*range(1, 21))
    assert "find_node" not in requests  # decided before any request went out
    assert op.result.walk_end == "enough_stores"


def test_returnable_after_15_successes_while_5_are_pending() -> None:
    op, targets = stores_sent_at_once()
    for index, peer in enumerate(targets[:14]):
        op.on_store_done(peer, True, 0.1 + index * 0.01)
    assert not op.returnable
    op.on_store_done(targets[14], True, 0.5)
    assert op.returnable and not op.done
    result = op.result
    assert result.stores_ok == 15 and result.returnable_at == 0.5 and result.finished_at is None
    assert len(result.store_targets) - result.stores_ok - result.stores_failed == 5
    for peer in targets[15:]:
        op.on_store_done(peer, True, 1.0)
    assert op.done and op.result.stores_ok == 20 and op.result.finished_at == 1.0
    assert op.result.time_to_return == 0.5 and op.result.duration == 1.0


def test_failed_stores_count_only_when_counting_completions() -> None:
    strict, targets = stores_sent_at_once()
    lenient, _ = stores_sent_at_once(return_counts="completions")
    for op in (strict, lenient):
        for peer in targets[:14]:
            op.on_store_done(peer, True, 0.1)
        op.on_store_done(targets[14], False, 0.2, "stream reset")
    assert not strict.returnable and lenient.returnable
    assert strict.result.stores_failed == 1 and strict.result.store_errors == {"stream reset": 1}


def test_returnable_when_all_settled_even_below_15_successes() -> None:
    op, targets = stores_sent_at_once()
    for peer in targets[:10]:
        op.on_store_done(peer, True, 0.1)
    for peer in targets[10:19]:
        op.on_store_done(peer, False, 0.2)
    assert not op.returnable
    assert op.next_deadline() == 10.0  # the last store times out at rpc_timeout
    op.poll(10.0)
    assert op.returnable and op.done
    assert op.result.stores_ok == 10 and op.result.stores_failed == 10
    assert op.result.store_timeouts == 1


def test_background_pool_bounds_the_stores_left_running() -> None:
    pool = BackgroundPool(3)
    op, targets = stores_sent_at_once(pool=pool)
    for peer in targets[:15]:
        op.on_store_done(peer, True, 0.1)
    assert not op.returnable and pool.in_use == 3  # 5 pending, 3 leases
    op.on_store_done(targets[15], True, 0.2)
    assert not op.returnable
    op.on_store_done(targets[16], False, 0.3)
    assert op.returnable and pool.in_use == 3  # 3 pending, 3 leases
    op.on_store_done(targets[17], True, 0.4)
    assert pool.in_use == 2  # a finished store gives its lease back
    for peer in targets[18:]:
        op.on_store_done(peer, True, 0.5)
    assert op.done and pool.in_use == 0


def test_late_and_unknown_store_reports() -> None:
    op, targets = stores_sent_at_once(rpc_timeout=1.0)
    op.poll(1.0)  # all 20 time out
    assert op.done and op.result.store_timeouts == 20
    op.on_store_done(targets[0], True, 1.5)  # late: ignored
    assert op.result.stores_ok == 0
    fresh, _ = stores_sent_at_once()
    with pytest.raises(ValueError, match="no ADD_PROVIDER in flight"):
        fresh.on_store_done(P(99), True, 0.1)
    with pytest.raises(ValueError, match="backwards"):
        fresh.poll(-1.0)


def test_without_thresholds_it_is_classic_provide() -> None:
    seeds = Ps(5, 1, 9, 30)
    ops = [ClassicProvide(0, seeds, now=0.0, alpha=2), optimistic(seeds, None, alpha=2)]
    transcripts = []
    for op in ops:
        transcript = [op.poll(0.0)]
        op.on_response(P(1), Ps(2, 3), 0.1)
        transcript.append(op.poll(0.1))
        for peer in Ps(5, 2, 3, 9, 30):
            op.on_response(peer, [], 0.2)
            transcript.append(op.poll(0.2))
        stores = [r.peer for step in transcript for r in step if r.kind == "add_provider"]
        for peer in stores[:-1]:
            op.on_store_done(peer, True, 0.3)
        assert not op.returnable  # classic provide waits for every store
        op.on_store_done(stores[-1], True, 0.4)
        assert op.done and op.returnable and op.result.returnable_at == 0.4
        transcripts.append(transcript)
    assert transcripts[0] == transcripts[1]
    classic, fallback = (op.result for op in ops)
    assert fallback.fell_back and not classic.fell_back
    assert fallback.holders == classic.holders == Ps(1, 2, 3, 5, 9, 30)
    assert fallback.rpcs == classic.rpcs == {"find_node": 6, "add_provider": 6}


def test_stop_abandons_everything() -> None:
    op = optimistic(Ps(1, 2, 40), (1.5 * UNIT, 0.1 * UNIT))
    op.poll(0.0)
    op.stop(0.5)
    assert op.done and op.returnable
    assert op.result.walk_end == "stopped" and op.result.stores_abandoned == 1
    op.on_response(P(2), Ps(3), 0.6)  # ignored after the end
    assert op.poll(0.7) == []


# ---------------------------------------------------------------- simulated network


@pytest.fixture(scope="module")
def net() -> SimNet:
    return SimNet(1000, seed=7)


@pytest.fixture(scope="module")
def thresholds(net: SimNet) -> tuple[float, float]:
    """The estimator fed by 40 completed lookups on the network, as a node would be."""
    rng = random.Random(21)
    estimator = NetworkSizeEstimator()
    now = 0.0
    for _ in range(40):
        origin = net.peers[rng.choice(net.live)]
        target = rng.getrandbits(KEY_BITS)
        result = net.run(net.start_lookup(origin, target, now=now), now=now).result
        now = result.finished_at
        estimator.track_lookup(result, now, bucket_fill_for(origin.table, target, result.closest))
    assert estimator.estimate(now) == pytest.approx(1000, rel=0.15)
    return estimator.thresholds(now)


def provide_cases(net: SimNet, seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        origin = net.peers[rng.choice(net.live)]
        yield origin, rng.getrandbits(KEY_BITS)


def run(net: SimNet, op: ProvideOperation, origin):
    return run_provide(net, op, origin.ref)


def test_optimistic_provide_saves_find_nodes_and_still_hits_the_true_closest(
    net: SimNet, thresholds: tuple[float, float]
) -> None:
    classic_rpcs, optimistic_rpcs, on_true_closest = [], [], []
    faster = 0
    for origin, key in provide_cases(net, 22, 40):
        seeds = origin.table.closest(key, 20)
        truth = set(net.true_closest(key, 20, exclude=origin.ref))
        classic = run(net, ClassicProvide(key, seeds, now=0.0, self_peer=origin.ref), origin)
        trace = run(net, OptimisticProvide(
            key, seeds, now=0.0, self_peer=origin.ref, estimator_thresholds=thresholds,
        ), origin)  # fmt: skip
        result = trace.result
        assert set(classic.result.holders) == truth  # classic provide is exact here
        assert not result.fell_back
        assert result.finished_at is not None and result.stores_ok == len(result.store_targets)
        classic_rpcs.append(classic.result.rpcs["find_node"])
        optimistic_rpcs.append(result.rpcs.get("find_node", 0))
        on_true_closest.append(len(truth & set(result.holders)))
        faster += result.time_to_return < classic.result.time_to_return
    assert statistics.median(optimistic_rpcs) < statistics.median(classic_rpcs)
    assert sum(optimistic_rpcs) < sum(classic_rpcs)
    assert statistics.median(on_true_closest) >= 18
    assert faster >= 30


def test_optimistic_provide_returns_with_stores_still_pending(
    net: SimNet, thresholds: tuple[float, float]
) -> None:
    pending = []
    for origin, key in provide_cases(net, 23, 20):
        seeds = origin.table.closest(key, 20)
        trace = run(net, OptimisticProvide(
            key, seeds, now=0.0, self_peer=origin.ref, estimator_thresholds=thresholds,
        ), origin)  # fmt: skip
        assert trace.result.returnable_at <= trace.result.finished_at
        pending.append(trace.pending_stores_at_return)
    assert max(pending) <= 5 and statistics.median(pending) > 0


def test_fallback_runs_exactly_like_classic_on_the_network(net: SimNet) -> None:
    for origin, key in provide_cases(net, 24, 10):
        seeds = origin.table.closest(key, 20)
        classic = run(net, ClassicProvide(key, seeds, now=0.0, self_peer=origin.ref), origin)
        fallback = run(net, OptimisticProvide(
            key, seeds, now=0.0, self_peer=origin.ref, estimator_thresholds=None,
        ), origin)  # fmt: skip
        assert fallback.requests == classic.requests
        assert fallback.result.holders == classic.result.holders
        assert fallback.result.fell_back
        assert fallback.result.returnable_at == fallback.result.finished_at


def test_provides_finish_among_faulty_peers(thresholds: tuple[float, float]) -> None:
    net = SimNet(1000, seed=11, dead=0.2, failing=0.1, stale=0.2)
    for origin, key in provide_cases(net, 25, 10):
        seeds = origin.table.closest(key, 20)
        for op in (
            ClassicProvide(key, seeds, now=0.0, self_peer=origin.ref, rpc_timeout=1.0),
            OptimisticProvide(key, seeds, now=0.0, self_peer=origin.ref, rpc_timeout=1.0,
                              estimator_thresholds=thresholds),
        ):  # fmt: skip
            result = run(net, op, origin).result
            assert result.finished_at is not None and result.duration < 10.0
            assert result.stores_ok >= 10
            assert set(result.holders) <= set(net.live)
