"""Optimistic provide: stores while it walks, stops early, answers after 15 of 20 stores.

The sans-IO machine behind the ``optprov`` fleet (the optimistic-provide proposal of D.
Trautwein / ProbeLab, as go-libp2p-kad-dht's ``optimisticProvide``), composed as
every ``provide.ProvideOperation`` is: a walk, a placement (``ThresholdPlacement``: stores
while it walks, stops it early) and an answer rule (``AfterSettled``: 15 stores, leases for
the rest); the thresholds come from ``estimator.NetworkSizeEstimator``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from .constants import ALPHA, BETA, K, RPC_TIMEOUT
from .keyspace import Key, PeerRef, normalized_distance
from .lookup import Lookup
from .lookup_types import LookupResult
from .provide import AllSettled, AnswerRule, ProvideOperation, StoreAtWalkEnd
from .stores import BackgroundPool, StoreState

OPTPROV_RETURN_AFTER = 15
"""go: ``ceil(k * optProvReturnRatio)`` with ratio 0.75 and k = 20."""

OPTPROV_STALL_TIMEOUT = 1.0
"""Seconds after which an unanswered FIND_NODE frees its slot in the optprov walk (``Lookup``'s
``stall_timeout``): a new connection and one request take 3 round trips, ≤ 1.23 s between the
farthest regions of the default matrix, 0.3–0.6 s for most pairs; a dial to an unreachable
peer takes 5 s to fail."""

ReturnCounts = Literal["successes", "completions"]


class OptimisticProvide(ProvideOperation):
    """Optimistic provide (the rules: ``provide``'s module docstring); ``estimator_thresholds`` is
    ``NetworkSizeEstimator.thresholds(now)``: ``(individual, set)`` normalised distances,
    or None to fall back to ``ClassicProvide``.

    ``return_counts``: ``"successes"`` (default, as the brief asks: 15 *successful* stores)
    or ``"completions"`` (go: 15 stores finished, successful or not). Only once the list of
    stores is final (the walk and its followup ended) is the threshold capped at the number
    of stores made, and the caller answered anyway once all settled; while the background
    refill may still add targets, fewer than 15 settled stores never answer the caller.

    ``rules="go"`` drops differences (1), (3) and (4) below and counts completions, as go does:
    the thresholds apply to every peer heard of and not yet failed (``closest_known``), the
    stores after the walk go to those, the caller is answered after 15 stores *finished*
    (failed ones included), and the walk has no stall timeout. The published speed-ups of
    optimistic provide were measured with go's rules (``bench/calibrate.py`` compares them);
    ``"parsec"`` (default) is the fleet's own, safer variant.

    Differences from go: (1) the thresholds are applied to the peers that *answered* this
    walk, and the stores after the walk go to the k closest of those — go applies them to
    every peer it knows of, heard-of ones included. The estimate is of the peers that
    answer (``NetworkSizeEstimator.estimate``: the listed peers times the share that
    answers), so comparing heard-of peers against it compares two different networks:
    where many listed ids are unreachable (≈45 % of the ids public crawls see) a heard-of
    list is denser than the estimate, the individual threshold then admits peers well outside the
    true k closest, and stores to unreachable peers hold the caller up for dial timeouts:
    records acknowledged early land on peers outside the true k closest reachable ones.
    (2) The set-threshold mean needs k peers (go pads missing distances with 0, so a walk
    knowing fewer than k peers stops at once). (3) The optprov fleet runs its walk with
    ``stall_timeout`` (``OPTPROV_STALL_TIMEOUT``): dials to unreachable peers neither block the
    walk's slots nor hold its end. (4) A walk that converges settles the k closest with the ``"refill"``
    followup (rust-libp2p's rule: every peer that makes the k closest non-failed ones is
    asked, until the k closest all answered) instead of go's one round over the k closest
    at convergence, which does not chase what they name: where tables list stale entries the
    peers behind them are found. The caller's answer does not wait for that refill
    (``_settles_in_background``) unless it has fewer than 15 stores to count. A stalled
    peer makes room for the next one, but once nobody is left to ask the refill waits for
    the stalled requests until they answer or time out (``Lookup``'s rule, go's: its
    followup waits for every request), so a slow peer still gets the record. Where every
    answer names the same dead ids near the key, no rule finds more live peers than the
    answers name: go's rules then store on the live peers among its k closest, after
    waiting out the dead dials, as ours do. The refill's price is stores beyond k: a peer
    that answers during the refill and enters the k closest gets one too, and a peer it
    pushes out keeps its own. (What rules (1) and (4) did against go's on one testbed and one
    simulated network: docs/fleets.md, "By-hand observations".)
    """


    def __init__(
        self,
        key_hash: Key,
        seeds: Iterable[PeerRef],
        *,
        now: float,
        estimator_thresholds: tuple[float, float] | None,
        alpha: int = ALPHA,
        beta: int = BETA,
        k: int = K,
        rpc_timeout: float = RPC_TIMEOUT,
        self_peer: PeerRef | None = None,
        return_after: int = OPTPROV_RETURN_AFTER,
        return_counts: ReturnCounts = "successes",
        pool: BackgroundPool | None = None,
        stall_timeout: float | None = None,
        rules: Literal["parsec", "go"] = "parsec",
    ) -> None:
        if rules not in ("parsec", "go"):
            raise ValueError(f"unknown optimistic-provide rules {rules!r}")
        go = rules == "go"
        if go:
            return_counts, stall_timeout = "completions", None
        if return_after < 1:
            raise ValueError(f"return_after must be >= 1, got {return_after}")
        if return_counts not in ("successes", "completions"):
            raise ValueError(f"unknown return_counts {return_counts!r}")
        if estimator_thresholds is not None:
            individual, set_ = estimator_thresholds
            if not (individual > 0 and set_ > 0):
                raise ValueError(f"thresholds must be > 0, got {estimator_thresholds}")
        self.rules = rules
        self.k = k
        self.return_after = return_after
        self.return_counts: ReturnCounts = return_counts
        walk = Lookup(key_hash, seeds, now=now, goal="closest", alpha=alpha, beta=beta, k=k, rpc_timeout=rpc_timeout,
                      self_peer=self_peer, stall_timeout=stall_timeout, followup="once" if go else "refill")
        placement: StoreAtWalkEnd
        answer: AnswerRule
        if estimator_thresholds is None:  # no estimate yet: classic provide
            placement, answer = StoreAtWalkEnd(), AllSettled()
        else:
            placement = ThresholdPlacement(k, *estimator_thresholds, known_peers=go, refill_in_background=not go)
            answer = AfterSettled(return_after, return_counts, pool, refill_in_background=not go)
        super().__init__(key_hash, now=now, rpc_timeout=rpc_timeout, strategy="optimistic", answer=answer,
                         walk=walk, placement=placement, fell_back=estimator_thresholds is None,
                         thresholds=estimator_thresholds)


def _refilling(op: ProvideOperation) -> bool:
    """parsec's rules: the walk converged and its followup now refills its k closest."""
    return op.walk is not None and op.walk.phase == "followup"


class ThresholdPlacement(StoreAtWalkEnd):
    """go's ``stopFn``, then the classic rule at the walk's end, over the peers that
    answered this walk (``known_peers``, go's rules: every peer heard of and not failed).

    While the walk runs: store on every peer of the k closest closer than the individual
    threshold, then stop the walk once k stores are scheduled or done, or the mean
    distance of the k closest is below the set threshold. With ``refill_in_background``
    (parsec's rules), once the walk converged and refills its k closest, the record goes
    to the k closest that answered so far and to each peer that answers later and enters
    them — the caller is answered after 15 stores as after a walk without followup, while
    the refill finds the peers behind stale entries (a few peers it pushes out of the k
    closest hold one as well). At the walk's end the k closest get the record.
    """

    def __init__(self, k: int, individual: float, set_: float, *, known_peers: bool,
                 refill_in_background: bool) -> None:
        self.k = k
        self.individual = individual
        self.set_ = set_
        self.known_peers = known_peers
        self.refill_in_background = refill_in_background

    def place(self, op: ProvideOperation) -> None:
        walk = op.walk
        assert walk is not None
        if self.refill_in_background and _refilling(op):  # no stop rule: the followup's refill is the point
            op.stores.schedule(walk.closest_responded(self.k))
        elif not walk.done:
            self._store_close_peers_and_maybe_stop(op, walk)
        super().place(op)

    def final_targets(self, result: LookupResult) -> list[PeerRef]:
        if self.known_peers:
            return super().final_targets(result)  # go: the k closest not known to be unreachable
        return result.closest  # peers that answered: see OptimisticProvide

    def _store_close_peers_and_maybe_stop(self, op: ProvideOperation, walk: Lookup) -> None:
        closest = walk.closest_known(self.k) if self.known_peers else walk.closest_responded(self.k)
        distances = [normalized_distance(peer.key, op.key) for peer in closest]
        close = [peer for peer, d in zip(closest, distances) if d < self.individual]
        op.early_stores += op.stores.schedule(close)
        stored_or_storing = op.stores.count(StoreState.SCHEDULED, StoreState.SENT, StoreState.OK)
        if stored_or_storing >= self.k:
            op.walk_end = "enough_stores"
        elif len(distances) >= self.k and math.fsum(distances) / len(distances) < self.set_:
            op.walk_end = "set_threshold"
        else:
            return
        walk.stop(op.now)


class AfterSettled(AnswerRule):
    """``return_after`` stores settled (successes or completions, ``counts``), each store
    still pending then holding a lease of ``pool``.

    The answer is decided once the list of stores is final or, with
    ``refill_in_background``, once the walk refills in the background. Only a final list
    lowers the bar: to its length, and to "every store settled". While the background
    refill may still add targets, a list of 10 that all settled is not a provide of 15 —
    the caller waits for more stores or for the refill to end."""

    def __init__(self, return_after: int, counts: ReturnCounts, pool: BackgroundPool | None, *,
                 refill_in_background: bool) -> None:
        self.return_after = return_after
        self.counts = counts
        self.pool = pool
        self.refill_in_background = refill_in_background
        self._leases = 0

    def answer_at(self, op: ProvideOperation) -> float | None:
        if not (op.stores_final or (self.refill_in_background and _refilling(op))):
            return None
        stores = op.stores
        settled = stores.successes if self.counts == "successes" else stores.completions
        if op.stores_final:
            if settled < min(self.return_after, len(stores)) and stores.pending > 0:
                return None
        elif settled < self.return_after:
            return None
        return op.now if self._lease_for_pending(op) else None

    def _lease_for_pending(self, op: ProvideOperation) -> bool:
        """Hold one pool lease per still-pending store; True once every one holds one."""
        if self.pool is None:
            return True
        pending = op.stores.pending
        self._leases += self.pool.acquire(pending - self._leases)
        return self._leases >= pending

    def release(self, op: ProvideOperation) -> None:
        """Give back the leases no pending store needs (all of them once done)."""
        if self.pool is None:
            return
        keep = 0 if op.done else op.stores.pending
        if self._leases > keep:
            self.pool.release(self._leases - keep)
            self._leases = keep
