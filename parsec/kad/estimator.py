"""Network-size estimation from completed lookups, and the optimistic-provide thresholds.

Why: optimistic provide (the ``optprov`` fleet) decides during the walk whether a peer is
"close enough" to the key to hold the record, and when the set of closest known peers is
good enough to stop walking. Both decisions need the network size N, which no peer knows;
it is estimated from the distances every completed lookup reveals.

Model. Peers sit uniformly in the keyspace, so the normalised XOR distances from a random
key to the N peers are N independent uniforms on [0, 1). The i-th closest, ``d_i``, is the
i-th order statistic: ``E[d_i] = i/(N+1)`` and ``Var[d_i] = i(N+1-i)/((N+1)^2 (N+2))``,
about ``i/N^2`` for ``i << N``. Each completed lookup gives one point ``(i, d_i)`` per rank
i = 1..k. Fitting ``d = s*i`` through the origin by weighted least squares, with point
weight ``w / i`` (``w`` the lookup's bucket weight, ``1/i`` the inverse order-statistic
variance), gives the closed form::

    s = sum(w * d) / sum(w * i)        over every point kept
    N = 1/s - 1

Differences from go-libp2p-kad-dht's ``netsize`` package (which this re-derives): go fits the
per-rank weighted means with weights equal to their *sample standard deviations* (weighting
noisy ranks up, not down); we weight by inverse variance, the textbook choice. go also keeps
at most 150 points per rank (``max_points_per_rank`` here, off by default) and needs at least
5 per rank (``min_points_per_rank``, as the issue says). Like go, points older than 2 h are
dropped, and a lookup's points are weighted by how full the routing-table bucket of its key
is: ``w = 2 ** (level - k)`` where ``level`` peers sit in that bucket (a lookup run while the
table was thin is trusted exponentially less). Here ``bucket_fill = level / k``.

Unreachable peers. Routing tables list peers that never answer (≈45 % of the peer ids public
crawls see never answer, ≈15 % of a table's entries are such ids: ``parsec.model.stale``). A
lookup hears of them like of any other peer but cannot learn, short of a complete walk
around every dead entry, which *reachable* peers are the k closest: the k closest that
answered are a biased sample — they miss the reachable peers only dead entries lead to, so
they sit farther from the key than the true k closest and the estimate comes out low. So a
lookup is tracked by the k closest peers it *heard of*, whatever their state, which
estimates the listed population N_listed, and by how many of those that were asked
answered; ``estimate`` is N_listed times that reachable share. Without unreachable peers
the share is 1 and nothing changes. (Both estimates on one simulated network:
docs/fleets.md, "By-hand observations".) Optimistic provide compares the peers that
answered with thresholds from this reachable N.

Thresholds (the optimistic-provide proposal by D. Trautwein / ProbeLab, as implemented in
go-libp2p-kad-dht ``optimistic_provide.go``; its constants, derived for k = 20): with N peers
the scaled distance ``N * d_k`` of the k-th closest is approximately Gamma(k, 1)-distributed.

* Individual threshold: the 10 % quantile of Gamma(k) over N (``OPTPROV_INDIVIDUAL_CERTAINTY``
  = 0.9): a peer this close is with 90 % certainty among the k closest, so it gets the
  record at once. For k = 20: ``≈ 14.53 / N``.
* Set threshold: the 90 % quantile of Gamma(k/2 + 1) over N (``OPTPROV_SET_STRICTNESS``
  = 0.1; go's approximation of the distribution of the mean distance of the k closest):
  when the k closest known peers are on average closer than this, stop walking. For
  k = 20: ``≈ 15.41 / N``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .keyspace import KEY_BITS, Key, PeerRef, common_prefix_len, normalized_distance

if TYPE_CHECKING:  # only for annotations: keep the import graph flat at runtime
    from .lookup_types import LookupResult
    from .routing import RoutingTable

OPTPROV_INDIVIDUAL_CERTAINTY = 0.9
"""go ``optProvIndividualThresholdCertainty``: how sure we want to be that a peer below the
individual threshold really is among the k closest."""

OPTPROV_SET_STRICTNESS = 0.1
"""go ``optProvSetThresholdStrictness``: the probability that the true k closest are on
average farther than the set threshold (that we are too strict and keep walking)."""

DEFAULT_MAX_AGE = 7200.0
"""go ``netsize.MaxMeasurementAge``: 2 h, in seconds."""

DEFAULT_MIN_POINTS_PER_RANK = 5
"""go ``netsize.MinMeasurementsThreshold``; the issue's "≥ 5 points per rank"."""


# ----------------------------------------------------------------- gamma quantiles


def regularized_lower_gamma(shape: float, x: float) -> float:
    """P(shape, x): the Gamma(shape, 1) CDF at ``x`` (power series; fine for x ≲ 100)."""
    if shape <= 0:
        raise ValueError(f"shape must be > 0, got {shape}")
    if x <= 0:
        return 0.0
    term = total = 1.0 / shape
    n = 0
    while term > total * 1e-17:
        n += 1
        term *= x / (shape + n)
        total += term
        if n > 10_000:  # pragma: no cover - never reached for the shapes used here
            break
    return min(1.0, math.exp(shape * math.log(x) - x - math.lgamma(shape)) * total)


def gamma_quantile(shape: float, probability: float) -> float:
    """The x with P(shape, x) = probability (go: ``mathext.GammaIncRegInv``), by bisection."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    low, high = 0.0, shape + 40.0 * math.sqrt(shape) + 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if regularized_lower_gamma(shape, middle) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def threshold_coefficients(k: int = 20) -> tuple[float, float]:
    """``(individual, set)`` coefficients c such that a threshold is ``c / N``."""
    individual = gamma_quantile(k, 1.0 - OPTPROV_INDIVIDUAL_CERTAINTY)
    set_ = gamma_quantile(k / 2 + 1, 1.0 - OPTPROV_SET_STRICTNESS)
    return individual, set_


OPTPROV_INDIVIDUAL_COEFFICIENT, OPTPROV_SET_COEFFICIENT = threshold_coefficients(20)
"""For k = 20: ≈ 14.53 and ≈ 15.41 (the thresholds are these over the estimated N)."""


# ----------------------------------------------------------------- the estimator


@dataclass(frozen=True, slots=True)
class _Sample:
    """One tracked lookup: its time, bucket weight and sorted distances (ranks 1..)."""

    at: float
    weight: float
    distances: tuple[float, ...]
    answered: int = 0  # of the k closest listed peers that were asked, how many answered
    asked: int = 0


def bucket_weight(bucket_fill: float, k: int) -> float:
    """go's ``calcWeight``: ``2 ** (level - k)`` with ``level = bucket_fill * k`` peers."""
    if not 0.0 <= bucket_fill <= 1.0:
        raise ValueError(f"bucket_fill must be within [0, 1], got {bucket_fill}")
    return 2.0 ** (k * (bucket_fill - 1.0))


def bucket_fill_for(table: RoutingTable, key: Key, closest: Iterable[PeerRef]) -> float:
    """How full the bucket of ``key`` in ``table`` is, as go weighs a tracked lookup.

    As go: if the bucket holds fewer than k peers but more of the lookup's closest peers
    would fit in it, those count instead (the table simply had not added them yet).
    """
    cpl = common_prefix_len(table.local.key, key)
    if cpl >= KEY_BITS:
        return 1.0  # the key is the local key itself: it has no bucket, trust it fully
    level = table.bucket_sizes().get(cpl, 0)
    if level < table.k:
        fitting = sum(1 for peer in closest if common_prefix_len(table.local.key, peer.key) == cpl)
        level = max(level, min(fitting, table.k))
    return level / table.k


class NetworkSizeEstimator:
    """Estimates N from the k closest peers of completed lookups (see the module docstring).

    Feed it with ``track`` (or ``track_lookup``) after every lookup that ran to completion
    — not after one a strategy stopped early (an optimistic provide stopped by its set
    threshold saw peers biased close to the key, as go also skips those). Every tracked
    lookup adds one point to each rank, so a running sum of ``w`` and of ``w * d`` is all
    the fit needs: ``estimate`` is O(1) however many points are kept.
    """

    def __init__(
        self,
        k: int = 20,
        max_age: float = DEFAULT_MAX_AGE,
        min_points_per_rank: int = DEFAULT_MIN_POINTS_PER_RANK,
        max_points_per_rank: int | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0, got {max_age}")
        if min_points_per_rank < 1:
            raise ValueError(f"min_points_per_rank must be >= 1, got {min_points_per_rank}")
        if max_points_per_rank is not None and max_points_per_rank < min_points_per_rank:
            raise ValueError("max_points_per_rank must be >= min_points_per_rank")
        self.k = k
        self.max_age = max_age
        self.min_points_per_rank = min_points_per_rank
        self.max_points_per_rank = max_points_per_rank
        self.individual_coefficient, self.set_coefficient = threshold_coefficients(k)
        self._samples: deque[_Sample] = deque()
        self._weight_sum = 0.0  # sum of w over kept samples (every rank has every sample)
        self._weighted_distance_sum = 0.0  # sum of w * d over every kept point
        self._answered = self._asked = 0  # over kept samples: the reachable share
        self._latest = -math.inf

    # ------------------------------------------------------------- feeding

    def track(
        self, key: Key, closest: Sequence[PeerRef], now: float, bucket_fill: float = 1.0,
        *, answered: int = 0, asked: int = 0,
    ) -> None:
        """Add the lookup for ``key`` whose k closest peers were ``closest``; ``answered``
        of them answered out of ``asked`` asked (both 0: not known, all count as reachable).

        At least k peers are required (go refuses other counts: ``ErrWrongNumOfPeers``);
        more are cut to the k closest. Order does not matter: distances are sorted here.
        """
        if len(closest) < self.k:
            raise ValueError(f"need the {self.k} closest peers, got {len(closest)}")
        distances = sorted(normalized_distance(peer.key, key) for peer in closest)
        self.track_distances(distances[: self.k], now, bucket_fill, answered=answered, asked=asked)

    def track_distances(
        self, distances: Sequence[float], now: float, bucket_fill: float = 1.0,
        *, answered: int = 0, asked: int = 0,
    ) -> None:
        """Add one lookup given directly as the k smallest normalised distances, sorted."""
        if not 0 <= answered <= asked:
            raise ValueError(f"need 0 <= answered <= asked, got {answered}, {asked}")
        if len(distances) != self.k:
            raise ValueError(f"need exactly {self.k} distances, got {len(distances)}")
        if any(b < a for a, b in zip(distances, distances[1:])):
            raise ValueError("distances must be sorted, closest first")
        if now < self._latest:
            raise ValueError(f"time went backwards: {now} < {self._latest}")
        self._latest = now
        sample = _Sample(now, bucket_weight(bucket_fill, self.k), tuple(distances), answered, asked)
        self._samples.append(sample)
        self._add(sample, +1)
        self._expire(now)
        if self.max_points_per_rank is not None:
            while len(self._samples) > self.max_points_per_rank:
                self._add(self._samples.popleft(), -1)

    def track_lookup(
        self, result: LookupResult, now: float, bucket_fill: float = 1.0
    ) -> bool:
        """Track a finished lookup if it ran to completion with k peers; True if tracked.

        Its ``closest_listed`` (the k closest peers heard of, reachable or not) give the
        distances, and how many of them answered gives the reachable share; lookups that
        were stopped, found a provider early or heard of fewer than k peers are skipped.
        """
        if result.reason != "converged" or len(result.closest_listed) < self.k:
            return False
        self.track(result.target, result.closest_listed, now, bucket_fill,
                   answered=result.listed_answered, asked=result.listed_asked)
        return True

    # ------------------------------------------------------------- queries

    def points_per_rank(self, now: float) -> int:
        """How many points each rank holds at ``now`` (all ranks hold the same number)."""
        self._expire(now)
        return len(self._samples)

    def estimate_listed(self, now: float) -> float | None:
        """The estimated number of peers the routing tables list (reachable or not), or
        None while a rank has too few points."""
        self._expire(now)
        if len(self._samples) < self.min_points_per_rank or self._weight_sum <= 0:
            return None
        rank_sum = self.k * (self.k + 1) / 2  # sum of i over the ranks of one sample
        slope = self._weighted_distance_sum / (self._weight_sum * rank_sum)
        if not slope > 0:
            return None
        return 1.0 / slope - 1.0

    def reachable_share(self, now: float) -> float:
        """Of the closest listed peers the tracked lookups asked, the share that answered
        (1.0 when nothing says otherwise)."""
        self._expire(now)
        return self._answered / self._asked if self._asked else 1.0

    def estimate(self, now: float) -> float | None:
        """The estimated number of reachable peers N — the listed ones times the share that
        answers — or None while a rank has too few points."""
        listed = self.estimate_listed(now)
        return None if listed is None else listed * self.reachable_share(now)

    def thresholds(self, now: float) -> tuple[float, float] | None:
        """``(individual, set)`` thresholds as normalised distances, None without estimate."""
        size = self.estimate(now)
        if size is None or size <= 0:
            return None
        return self.individual_coefficient / size, self.set_coefficient / size

    # ------------------------------------------------------------- internals

    def _add(self, sample: _Sample, sign: int) -> None:
        self._answered += sign * sample.answered
        self._asked += sign * sample.asked
        self._weight_sum += sign * sample.weight
        self._weighted_distance_sum += sign * sample.weight * math.fsum(sample.distances)

    def _expire(self, now: float) -> None:
        """Drop samples whose age reached ``max_age``; reset the sums when none is left so
        that floating-point residue of the subtractions cannot accumulate."""
        cutoff = now - self.max_age
        while self._samples and self._samples[0].at <= cutoff:
            self._add(self._samples.popleft(), -1)
        if not self._samples:
            self._weight_sum = self._weighted_distance_sum = 0.0
            self._answered = self._asked = 0

    def __repr__(self) -> str:
        return f"NetworkSizeEstimator(k={self.k}, samples={len(self._samples)})"
