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

* ``ClassicProvide`` — go's ``IpfsDHT.Provide``: a "closest" lookup with followup, then
  ADD_PROVIDER to the k closest known peers at the walk's end (``LookupResult.closest_known``),
  returning when every store finished.
* ``OptimisticProvide`` (in ``optimistic``) — go's ``optimisticProvide``: the same lookup,
  but after every event it stores at once on peers that answered and are closer than the
  individual threshold, and stops the walk when the mean distance of the k closest of them
  is below the set threshold (or when k stores are scheduled or done); ``returnable`` after
  15 of 20 stores while the rest finish in the background (a ``BackgroundPool`` of 60).
* ``DirectProvide`` (in ``fullrt``) — store straight to given targets, no lookup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .constants import ALPHA, BETA, K, RPC_TIMEOUT
from .keyspace import Key, PeerRef
from .lookup import Lookup
from .lookup_types import Followup, LookupResult
from .machine import Failure, Outcome, Request, RequestKind
from .stores import StoreSet, StoreState

__all__ = ["ClassicProvide", "ProvideOperation", "ProvideResult", "Request", "RequestKind", "Strategy", "WalkEnd"]

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


class ProvideOperation:
    """The driver interface shared by every provide strategy (see the module docstring).

    Subclasses decide which stores to schedule (``_progress``) and when the caller may be
    answered (``_may_return``); time keeping, store bookkeeping and results live here.
    """

    strategy: ClassVar[Strategy]

    def __init__(self, key: Key, *, now: float, rpc_timeout: float) -> None:
        self.key = key
        self._now = now
        self._started_at = now
        self._stores = StoreSet(rpc_timeout)
        self._lookup: Lookup | None = None
        self._stores_final = False  # every store this operation will make is scheduled
        self._early_stores = 0
        self._walk_end: WalkEnd | None = None
        self._requests: Counter[str] = Counter()
        self._returnable_at: float | None = None
        self._finished_at: float | None = None
        self._stopped = False

    # ------------------------------------------------------------- driver events

    def poll(self, now: float) -> list[Request]:
        """Expire timeouts, then return the requests to send now."""
        self._advance(now)
        if self.done:
            return []
        requests: list[Request] = []
        if self._lookup is not None and not self._lookup.done:
            requests += self._lookup.poll(now)
            self._progress()  # the lookup's own timeouts may have moved it on
        requests += [Request(peer, "add_provider") for peer in self._stores.send_scheduled(now)]
        self._requests.update(request.kind for request in requests)
        self._update()
        return requests

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        """What came of ``request``: a store settled, or the walk's request answered or
        failed."""
        failed = isinstance(outcome, Failure)
        if request.kind == "add_provider":
            self.on_store_done(request.peer, not failed, now, outcome.error if failed else "")
        elif failed:
            self.on_failure(request.peer, now, outcome.error)
        else:
            self.on_response(request.peer, outcome.closer, now, outcome.providers)

    def on_response(
        self,
        peer: PeerRef,
        closer: Iterable[PeerRef],
        now: float,
        providers: Iterable[PeerRef] = (),
    ) -> None:
        """A FIND_NODE (or GET_PROVIDERS) to ``peer`` was answered."""
        self._advance(now)
        if self.done:
            return
        self._walk().on_response(peer, closer, now, providers)
        self._progress()
        self._update()

    def on_failure(self, peer: PeerRef, now: float, error: str = "") -> None:
        """A FIND_NODE (or GET_PROVIDERS) to ``peer`` failed."""
        self._advance(now)
        if self.done:
            return
        self._walk().on_failure(peer, now, error)
        self._progress()
        self._update()

    def on_store_done(self, peer: PeerRef, ok: bool, now: float, error: str = "") -> None:
        """The ADD_PROVIDER to ``peer`` finished: delivered (``ok``) or failed."""
        self._advance(now)
        if not self.done:
            self._stores.settle(peer, ok, error)
        self._update()

    def stop(self, now: float) -> None:
        """Give up at once: end the walk, abandon pending stores; done afterwards."""
        self._advance(now)
        if self.done:
            return
        if self._lookup is not None and not self._lookup.done:
            self._lookup.stop(now)
            self._walk_end = "stopped"
        self._stopped = True
        self._stores.abandon()
        self._update()

    # ------------------------------------------------------------- queries

    def next_deadline(self) -> float | None:
        """When the driver must ``poll`` even if nothing arrives (None: nothing awaited)."""
        deadlines = [self._stores.next_deadline()]
        if self._lookup is not None:
            deadlines.append(self._lookup.next_deadline())
        deadlines.extend(self._extra_deadlines())
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
        return [] if self._lookup is None else self._lookup.path_to(peer)

    @property
    def fell_back(self) -> bool:
        return False

    @property
    def thresholds(self) -> tuple[float, float] | None:
        return None

    @property
    def result(self) -> ProvideResult:
        lookup = None if self._lookup is None else self._lookup.result
        stores = self._stores
        return ProvideResult(
            key=self.key,
            strategy=self.strategy,
            fell_back=self.fell_back,
            thresholds=self.thresholds,
            walk_end=self._walk_end,
            lookup=lookup,
            rpcs=dict(self._requests),
            stores_ok=stores.successes,
            stores_failed=stores.count(StoreState.FAILED, StoreState.TIMED_OUT),
            store_timeouts=stores.count(StoreState.TIMED_OUT),
            stores_abandoned=stores.count(StoreState.ABANDONED),
            early_stores=self._early_stores,
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
            f"{type(self).__name__}(key={self.key >> 224:08x}…, stores={len(self._stores)}, "
            f"ok={self._stores.successes}, returnable={self.returnable}, done={self.done})"
        )

    # ------------------------------------------------------------- for subclasses

    def _progress(self) -> None:
        """Schedule whatever stores the current state calls for."""

    def _may_return(self) -> bool:
        """Whether the caller may be answered, given that stores are final. Default: when
        every store settled (go's classic provide waits for all)."""
        return self._stores.pending == 0

    def _answer_decided(self) -> bool:
        """Whether the stores the caller's answer waits for are decided before the final
        ones are (default: no — the answer waits for the final stores)."""
        return False

    def _returnable_since(self) -> float:
        """When the condition of ``_may_return`` started to hold (default: now)."""
        return self._now

    def _extra_deadlines(self) -> list[float]:
        return []

    def _on_advance(self, now: float) -> None:
        """Hook run when the clock moves, before the event at ``now`` is applied."""

    # ------------------------------------------------------------- internals

    def _walk(self) -> Lookup:
        if self._lookup is None:
            raise ValueError(f"{type(self).__name__} sends no lookup requests")
        return self._lookup

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        self._on_advance(now)
        if not self.done:
            self._stores.expire(now)

    def _update(self) -> None:
        """Latch ``returnable`` and ``done`` once their conditions hold."""
        if self.done:
            return
        ready = self._stopped or self._stores_final
        if (ready or self._answer_decided()) and self._returnable_at is None and (self._stopped or self._may_return()):
            self._returnable_at = self._returnable_since()
        if ready and self._stores.pending == 0:
            if self._returnable_at is None:
                self._returnable_at = self._now
            self._finished_at = self._now


class ClassicProvide(ProvideOperation):
    """go's classic provide: full "closest" lookup (with followup), then ADD_PROVIDER to the
    k closest peers known when the walk ended; the caller waits for every store."""

    strategy: ClassVar[Strategy] = "classic"

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
        super().__init__(key_hash, now=now, rpc_timeout=rpc_timeout)
        self.k = k
        self._lookup = Lookup(
            key_hash, seeds, now=now, goal="closest", alpha=alpha, beta=beta, k=k,
            rpc_timeout=rpc_timeout, self_peer=self_peer, stall_timeout=stall_timeout, followup=followup,
        )  # fmt: skip
        self._progress()
        self._update()

    def _progress(self) -> None:
        lookup = self._walk()
        if lookup.done and not self._stores_final:
            if self._walk_end is None:
                self._walk_end = lookup.reason
            self._stores.schedule(self._final_targets(lookup.result))
            self._stores_final = True

    def _final_targets(self, result: LookupResult) -> list[PeerRef]:
        """Where the record goes once the walk ended: go's choice, the k closest peers not
        known to be unreachable (so peers heard of but never asked are included)."""
        return result.closest_known
