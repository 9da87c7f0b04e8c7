"""The network-size estimator on synthetic data (exact XOR-closest sets, virtual clock)."""

import math
import random

import pytest

from parsec.kad import (
    KEY_BITS,
    OPTPROV_INDIVIDUAL_COEFFICIENT,
    OPTPROV_SET_COEFFICIENT,
    NetworkSizeEstimator,
    PeerRef,
    RoutingTable,
    bucket_fill_for,
    closest_in_sorted,
    threshold_coefficients,
)
from parsec.kad.estimator import gamma_quantile, regularized_lower_gamma

from .simnet import SimNet, trained_estimator


class SyntheticNetwork:
    """``size`` peers at random keys; the exact k closest to any target via a sorted array."""

    def __init__(self, size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        keys = sorted(self.rng.getrandbits(KEY_BITS) for _ in range(size))
        self.keys = keys
        self.peers = [PeerRef(index.to_bytes(4, "big"), key) for index, key in enumerate(keys)]

    def lookup(self, k: int = 20) -> tuple[int, list[PeerRef]]:
        """A random target and its true k closest peers."""
        target = self.rng.getrandbits(KEY_BITS)
        return target, [self.peers[i] for i in closest_in_sorted(self.keys, target, k)]

    def feed(self, estimator: NetworkSizeEstimator, lookups: int, *, at: float = 0.0,
             bucket_fill: float = 1.0) -> None:  # fmt: skip
        for _ in range(lookups):
            target, closest = self.lookup(estimator.k)
            estimator.track(target, closest, now=at, bucket_fill=bucket_fill)


# ---------------------------------------------------------------- constants


def test_threshold_coefficients_are_the_go_constants_for_k_20() -> None:
    assert OPTPROV_INDIVIDUAL_COEFFICIENT == pytest.approx(14.53, abs=0.005)
    assert OPTPROV_SET_COEFFICIENT == pytest.approx(15.41, abs=0.005)
    assert threshold_coefficients(20) == (OPTPROV_INDIVIDUAL_COEFFICIENT, OPTPROV_SET_COEFFICIENT)


def test_gamma_quantile_inverts_the_gamma_cdf() -> None:
    # Gamma(1) is the exponential distribution: its p-quantile is -ln(1 - p).
    assert gamma_quantile(1, 0.9) == pytest.approx(-math.log(0.1), rel=1e-9)
    for shape, p in [(20, 0.1), (11, 0.9), (3.5, 0.5)]:
        quantile = gamma_quantile(shape, p)
        assert regularized_lower_gamma(shape, quantile) == pytest.approx(p, abs=1e-9)


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("size", [1_000, 5_000, 20_000, 50_000])
def test_estimate_within_15_percent_of_the_true_size(size: int) -> None:
    estimator = NetworkSizeEstimator()
    SyntheticNetwork(size, seed=size).feed(estimator, lookups=200)
    estimate = estimator.estimate(now=0.0)
    assert estimate is not None
    assert abs(estimate / size - 1) < 0.15, f"N={size}: estimated {estimate:.0f}"
    individual, set_ = estimator.thresholds(now=0.0)
    assert individual == pytest.approx(OPTPROV_INDIVIDUAL_COEFFICIENT / estimate)
    assert set_ == pytest.approx(OPTPROV_SET_COEFFICIENT / estimate)


def test_thin_bucket_lookups_weigh_exponentially_less() -> None:
    estimator = NetworkSizeEstimator()
    SyntheticNetwork(1_000, seed=1).feed(estimator, lookups=100)
    # As many lookups from a 100-peer view, but run while the bucket held 10 of 20 peers:
    # weight 2**-10 each, so the estimate barely moves.
    SyntheticNetwork(100, seed=2).feed(estimator, lookups=100, bucket_fill=0.5)
    assert estimator.estimate(0.0) == pytest.approx(1_000, rel=0.15)


def test_bucket_fill_of_a_lookup_follows_the_table() -> None:
    net = SimNet(300, seed=5)
    origin = net.random_live_peer()
    target = origin.ref.key ^ (1 << (KEY_BITS - 1))  # CPL 0 with the origin: a full bucket
    assert bucket_fill_for(origin.table, target, []) == 1.0
    lonely = RoutingTable(origin.ref, 20)
    closest = net.true_closest(target, 20)
    assert bucket_fill_for(lonely, target, []) == 0.0
    # An empty bucket, but all 20 closest peers would fit in it: counts as full (as go).
    assert bucket_fill_for(lonely, target, closest) == 1.0


# ---------------------------------------------------------------- data requirements


def test_no_estimate_below_5_points_per_rank() -> None:
    estimator = NetworkSizeEstimator()
    network = SyntheticNetwork(1_000, seed=3)
    network.feed(estimator, lookups=4)
    assert estimator.points_per_rank(0.0) == 4
    assert estimator.estimate(0.0) is None and estimator.thresholds(0.0) is None
    network.feed(estimator, lookups=1)
    assert estimator.estimate(0.0) is not None


def test_points_older_than_two_hours_expire() -> None:
    estimator = NetworkSizeEstimator()
    network = SyntheticNetwork(1_000, seed=4)
    network.feed(estimator, lookups=5, at=0.0)
    assert estimator.estimate(7_199.0) is not None
    network.feed(estimator, lookups=3, at=3_600.0)
    assert estimator.points_per_rank(7_199.0) == 8
    assert estimator.points_per_rank(7_200.0) == 3  # the five from t=0 are 2 h old
    assert estimator.estimate(7_200.0) is None
    network.feed(estimator, lookups=2, at=7_300.0)
    assert estimator.estimate(7_300.0) is not None
    assert estimator.estimate(3_600.0 + 7_200.0) is None


def test_max_points_per_rank_keeps_the_newest() -> None:
    estimator = NetworkSizeEstimator(max_points_per_rank=150)
    SyntheticNetwork(1_000, seed=6).feed(estimator, lookups=200)
    assert estimator.points_per_rank(0.0) == 150


def test_track_needs_k_peers_and_forward_time() -> None:
    estimator = NetworkSizeEstimator()
    network = SyntheticNetwork(500, seed=7)
    target, closest = network.lookup()
    with pytest.raises(ValueError, match="20 closest"):
        estimator.track(target, closest[:19], now=0.0)
    estimator.track(target, list(reversed(closest)), now=10.0)  # order does not matter
    with pytest.raises(ValueError, match="backwards"):
        estimator.track(target, closest, now=5.0)
    with pytest.raises(ValueError, match="bucket_fill"):
        estimator.track(target, closest, now=10.0, bucket_fill=1.5)


def test_track_lookup_takes_only_completed_lookups() -> None:
    net = SimNet(300, seed=8)
    origin = net.random_live_peer()
    estimator = NetworkSizeEstimator()
    completed = net.run(net.start_lookup(origin, 12345)).result
    assert estimator.track_lookup(completed, now=1.0)
    stopped = net.start_lookup(origin, 999)
    stopped.stop(0.0)
    assert not estimator.track_lookup(stopped.result, now=2.0)
    tiny = SimNet(5, seed=9)
    small = tiny.run(tiny.start_lookup(tiny.random_live_peer(), 1)).result
    assert not estimator.track_lookup(small, now=3.0)  # fewer than k peers exist
    assert estimator.points_per_rank(3.0) == 1


def test_the_reachable_share_scales_the_listed_estimate() -> None:
    estimator = NetworkSizeEstimator(min_points_per_rank=1)
    distances = [i / 1001 for i in range(1, 21)]  # the 20 closest of 1,000 listed peers
    estimator.track_distances(distances, 0.0, answered=11, asked=20)
    estimator.track_distances(distances, 1.0, answered=12, asked=20)
    assert estimator.estimate_listed(1.0) == pytest.approx(1000)
    assert estimator.reachable_share(1.0) == pytest.approx(23 / 40)
    assert estimator.estimate(1.0) == pytest.approx(575)
    with pytest.raises(ValueError, match="answered"):
        estimator.track_distances(distances, 2.0, answered=3, asked=2)


def test_with_dead_entries_the_estimate_is_of_the_reachable_peers() -> None:
    """45 % of table entries dead: tracking what the lookups heard of, times the share of
    those that answered, lands within 15 % of the reachable count."""
    net = SimNet(1000, seed=7, dead=0.45)
    estimator, now, results = trained_estimator(net, rpc_timeout=5.0)
    for result in results:
        assert result.listed_answered <= result.listed_asked <= len(result.closest_listed) == 20
    assert estimator.estimate(now) == pytest.approx(len(net.live), rel=0.15)
    assert estimator.estimate_listed(now) == pytest.approx(1000, rel=0.15)
