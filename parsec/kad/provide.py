"""Provide strategies as sans-IO state machines behind one action interface.

Why one interface: a fleet measures *how* a record gets stored, so the driver (libp2p or
simulator) must run classic provide, optimistic provide and the full-routing-table direct
store with the same loop and the same accounting. Every strategy is a ``ProvideOperation``,
a ``Machine`` (``parsec.kad.machine``: the driver loop and its rules)::

    op = OptimisticProvide(key, table.closest(key, 20), now=clock(), estimator_thresholds=...)
    while not op.done:                       # or stop waiting once op.returnable
        for request in op.poll(clock()):     # Request(peer, "find_node" | "add_provider")
            send it; its outcome arrives later
        wait for an outcome, or until op.next_deadline()
        op.on_outcome(request, Reply(closer) or Failure(error), clock())
    op.result

A store not reported within ``rpc_timeout`` counts as timed out; a late report is ignored.

Composition: a ``ProvideOperation`` is a walk (a "closest" ``Lookup``, or none), a
**placement** that decides where the record goes as the walk moves on (``Placement``), and
an **answer rule** that decides when the caller may be answered (``AnswerRule``); the
operation keeps the time, the stores and the result. The strategies below are those parts
put together:

* ``ClassicProvide`` — go's ``IpfsDHT.Provide``: a "closest" lookup with followup, then
  ADD_PROVIDER to the k closest known peers at the walk's end (``LookupResult.closest_known``),
  returning when every store finished (``StoreAtWalkEnd`` + ``AllSettled``).
* ``OptimisticProvide`` (in ``optimistic``) — go's ``optimisticProvide``: the same lookup,
  but after every event it stores at once on peers that answered and are closer than the
  individual threshold, and stops the walk when the mean distance of the k closest of them
  is below the set threshold (or when k stores are scheduled or done); ``returnable`` after
  15 of 20 stores while the rest finish in the background (a ``BackgroundPool`` of 60)
  (``ThresholdPlacement`` + ``AfterSettled``; without an estimate, classic's parts).
* ``DirectProvide`` (in ``fullrt``) — store straight to given targets, no lookup (no walk,
  the targets up front + ``QuietPeriod``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .constants import ALPHA, BETA, K, RPC_TIMEOUT
from .keyspace import Key, PeerRef
from .lookup import Lookup
from .lookup_types import Followup, LookupResult
from .machine import Failure, Outcome, Reply, Request, RequestKind
from .stores import StoreSet, StoreState

__all__ = ["AllSettled", "AnswerRule", "ClassicProvide", "Placement", "ProvideOperation", "ProvideResult", "Request",
           "RequestKind", "StoreAtWalkEnd", "Strategy", "WalkEnd"]

Strategy = Literal["classic", "optimistic", "direct"]
WalkEnd = Literal["converged", "exhausted", "found", "stopped", "set_threshold", "enough_stores"]

@dataclass(frozen=True, slots=True)
class ProvideResult:
    """What a provide did and cost. Times are in the driver's clock.

    ``rpcs``: requests handed out, by kind. ``holders``: peers whose ADD_PROVIDER succeeded,
    in the order the stores were decided. ``store_targets``: every peer an ADD_PROVIDER was
    decided for. ``early_stores``: of those, how many were decided during the walk
    (individual threshold). ``walk_end``: why the walk ended — the lookup's reason, or
    ``set_threshold`` / ``enough_stores`` when optimistic provide stopped it (None without a
    walk, or while it runs). ``lookup``: the lookup's result (None for a direct store); feed
    it to ``NetworkSizeEstimator.track_lookup``, which takes only completed ones.
    ``returnable_at``: when the caller could have been answered; ``finished_at``: when the
    last store settled. None while not reached.
    """

    key: Key
    strategy: Strategy
    fell_back: bool
    thresholds: tuple[float, float] | None
    walk_end: WalkEnd | None
    lookup: LookupResult | None
    rpcs: dict[str, int]
    stores_ok: int
    stores_failed: int
    store_timeouts: int
    stores_abandoned: int
    early_stores: int
    holders: list[PeerRef]
    store_targets: list[PeerRef]
    hops: int
    started_at: float
    walk_ended_at: float | None
    returnable_at: float | None
    finished_at: float | None
    store_errors: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds until every store settled."""
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def time_to_return(self) -> float | None:
        """Seconds until the caller could have been answered (the measured provide time)."""
        return None if self.returnable_at is None else self.returnable_at - self.started_at


class Placement:
    """Where a provide's record goes: ``place`` schedules the stores the operation's state
    calls for, after every event of its walk (and once at the start)."""

    def place(self, op: ProvideOperation) -> None:
        raise NotImplementedError


class AnswerRule:
    """When a provide's caller may be answered.

    ``answer_at`` is asked after every event until it answers (and never once the
    operation was stopped: that answers the caller at once): the time from which the
    caller may be answered, or None while not yet. Once every store settled the caller is
    answered in any case. Rules that keep time of their own give ``next_deadline`` and are
    told every move of the clock (``advance``); rules that hold resources give them back
    in ``release``, called after every event."""

    def answer_at(self, op: ProvideOperation) -> float | None:
        raise NotImplementedError

    def next_deadline(self, op: ProvideOperation) -> float | None:
        return None

    def advance(self, op: ProvideOperation, now: float) -> None:
        """The clock moved to ``now``, before the event at ``now`` is applied."""

    def release(self, op: ProvideOperation) -> None:
        """After every event: give back what the rule no longer needs."""


class ProvideOperation:
    """A provide: a walk (or none), a placement, an answer rule (see the module docstring).

    ``targets`` are stores decided up front (a direct provide's: the list is final).
    ``walk``, ``stores``, ``stores_final``, ``walk_end``, ``early_stores`` and ``now`` are
    the state placements and answer rules read and move on; the driver uses the
    ``Machine`` interface only.
    """

    def __init__(self, key: Key, *, now: float, rpc_timeout: float, strategy: Strategy, answer: AnswerRule,
                 walk: Lookup | None = None, placement: Placement | None = None,
                 targets: Iterable[PeerRef] = (), fell_back: bool = False,
                 thresholds: tuple[float, float] | None = None) -> None:
        if (walk is None) != (placement is None):
            raise ValueError("a walk needs a placement, and a placement a walk")
        self.key = key
        self.strategy: Strategy = strategy
        self.fell_back = fell_back
        self.thresholds = thresholds
        self.now = now
        self.walk = walk
        self.stores = StoreSet(rpc_timeout)
        self.stores_final = False  # every store this operation will make is scheduled
        self.early_stores = 0
        self.walk_end: WalkEnd | None = None
        self._placement = placement
        self._answer = answer
        self._started_at = now
        self._requests: Counter[str] = Counter()
        self._returnable_at: float | None = None
        self._finished_at: float | None = None
        self._stopped = False
        if walk is None:
            self.stores.schedule(targets)
            self.stores_final = True
        else:
            self._place()
        self._update()

    # ------------------------------------------------------------- driver events

    def poll(self, now: float) -> list[Request]:
        """Expire timeouts, then return the requests to send now."""
        self._advance(now)
        if self.done:
            return []
        requests: list[Request] = []
        if self.walk is not None and not self.walk.done:
            requests += self.walk.poll(now)
            self._place()  # the walk's own timeouts may have moved it on
        requests += [Request(peer, "add_provider") for peer in self.stores.send_scheduled(now)]
        self._requests.update(request.kind for request in requests)
        self._update()
        return requests

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        """What came of ``request``: a store settled, or the walk's request answered or
        failed."""
        if request.kind == "add_provider":
            failed = isinstance(outcome, Failure)
            self.on_store_done(request.peer, not failed, now, outcome.error if failed else "")
            return
        self._advance(now)
        if self.done:
            return
        self._walking().on_outcome(request, outcome, now)
        self._place()
        self._update()

    def on_response(
        self,
        peer: PeerRef,
        closer: Iterable[PeerRef],
        now: float,
        providers: Iterable[PeerRef] = (),
    ) -> None:
        """A FIND_NODE (or GET_PROVIDERS) to ``peer`` was answered (``on_outcome``, by peer)."""
        self.on_outcome(self._walk_request(peer), Reply(tuple(closer), tuple(providers)), now)

    def on_failure(self, peer: PeerRef, now: float, error: str = "") -> None:
        """A FIND_NODE (or GET_PROVIDERS) to ``peer`` failed (``on_outcome``, by peer)."""
        self.on_outcome(self._walk_request(peer), Failure(error), now)

    def on_store_done(self, peer: PeerRef, ok: bool, now: float, error: str = "") -> None:
        """The ADD_PROVIDER to ``peer`` finished: delivered (``ok``) or failed."""
        self._advance(now)
        if not self.done:
            self.stores.settle(peer, ok, error)
        self._update()

    def stop(self, now: float) -> None:
        """Give up at once: end the walk, abandon pending stores, answer the caller; done
        afterwards."""
        self._advance(now)
        if self.done:
            return
        if self.walk is not None and not self.walk.done:
            self.walk.stop(now)
            self.walk_end = "stopped"
        self._stopped = True
        self.stores.abandon()
        self._update()

    # ------------------------------------------------------------- queries

    def next_deadline(self) -> float | None:
        """When the driver must ``poll`` even if nothing arrives (None: nothing awaited)."""
        deadlines = [self.stores.next_deadline(), self._answer.next_deadline(self)]
        if self.walk is not None:
            deadlines.append(self.walk.next_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    @property
    def done(self) -> bool:
        """Every store this operation decided has settled (or it was stopped)."""
        return self._finished_at is not None

    @property
    def returnable(self) -> bool:
        """The caller may be answered now; stays True once reached."""
        return self._returnable_at is not None

    def path_to(self, peer: PeerRef) -> list[PeerRef]:
        """The chain of peers the walk followed to ``peer`` (``Lookup.path_to``; empty
        without a walk)."""
        return [] if self.walk is None else self.walk.path_to(peer)

    @property
    def result(self) -> ProvideResult:
        lookup = None if self.walk is None else self.walk.result
        stores = self.stores
        return ProvideResult(
            key=self.key,
            strategy=self.strategy,
            fell_back=self.fell_back,
            thresholds=self.thresholds,
            walk_end=self.walk_end,
            lookup=lookup,
            rpcs=dict(self._requests),
            stores_ok=stores.successes,
            stores_failed=stores.count(StoreState.FAILED, StoreState.TIMED_OUT),
            store_timeouts=stores.count(StoreState.TIMED_OUT),
            stores_abandoned=stores.count(StoreState.ABANDONED),
            early_stores=self.early_stores,
            holders=stores.peers(StoreState.OK),
            store_targets=stores.peers(),
            hops=0 if lookup is None else lookup.hops,
            started_at=self._started_at,
            walk_ended_at=None if lookup is None else lookup.walk_ended_at,
            returnable_at=self._returnable_at,
            finished_at=self._finished_at,
            store_errors=stores.errors,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self.key >> 224:08x}…, stores={len(self.stores)}, "
            f"ok={self.stores.successes}, returnable={self.returnable}, done={self.done})"
        )

    # ------------------------------------------------------------- internals

    def _walk_request(self, peer: PeerRef) -> Request:
        return Request(peer, "find_node" if self.walk is None else self.walk.kind)

    def _walking(self) -> Lookup:
        if self.walk is None:
            raise ValueError(f"{type(self).__name__} sends no lookup requests")
        return self.walk

    def _place(self) -> None:
        assert self._placement is not None
        self._placement.place(self)

    def _advance(self, now: float) -> None:
        if now < self.now:
            raise ValueError(f"time went backwards: {now} < {self.now}")
        self.now = now
        self._answer.advance(self, now)
        if not self.done:
            self.stores.expire(now)

    def _update(self) -> None:
        """Latch ``returnable`` and ``done`` once their conditions hold."""
        if not self.done:
            if self._returnable_at is None:
                self._returnable_at = self.now if self._stopped else self._answer.answer_at(self)
            if (self._stopped or self.stores_final) and self.stores.pending == 0:
                if self._returnable_at is None:
                    self._returnable_at = self.now
                self._finished_at = self.now
        self._answer.release(self)


class StoreAtWalkEnd(Placement):
    """go's classic rule: once the walk ended, the record goes to the k closest peers not
    known to be unreachable when it ended (``LookupResult.closest_known``: peers heard of
    but never asked are included), and the list of stores is final."""

    def place(self, op: ProvideOperation) -> None:
        walk = op.walk
        assert walk is not None
        if walk.done and not op.stores_final:
            if op.walk_end is None:
                op.walk_end = walk.reason
            op.stores.schedule(self.final_targets(walk.result))
            op.stores_final = True

    def final_targets(self, result: LookupResult) -> list[PeerRef]:
        return result.closest_known


class AllSettled(AnswerRule):
    """go's classic rule: the caller waits until every store settled."""

    def answer_at(self, op: ProvideOperation) -> float | None:
        return op.now if op.stores_final and op.stores.pending == 0 else None


class ClassicProvide(ProvideOperation):
    """go's classic provide: full "closest" lookup (with followup), then ADD_PROVIDER to the
    k closest peers known when the walk ended; the caller waits for every store."""

    def __init__(
        self,
        key_hash: Key,
        seeds: Iterable[PeerRef],
        *,
        now: float,
        alpha: int = ALPHA,
        beta: int = BETA,
        k: int = K,
        rpc_timeout: float = RPC_TIMEOUT,
        self_peer: PeerRef | None = None,
        stall_timeout: float | None = None,
        followup: Followup = "once",
    ) -> None:
        self.k = k
        walk = Lookup(key_hash, seeds, now=now, goal="closest", alpha=alpha, beta=beta, k=k, rpc_timeout=rpc_timeout,
                      self_peer=self_peer, stall_timeout=stall_timeout, followup=followup)
        super().__init__(key_hash, now=now, rpc_timeout=rpc_timeout, strategy="classic", answer=AllSettled(),
                         walk=walk, placement=StoreAtWalkEnd())
