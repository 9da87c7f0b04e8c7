"""The iterative Kademlia lookup as a sans-IO state machine.

Why sans-IO: the same lookup must run over real libp2p streams (``parsec.net``) and inside a
discrete-event simulator with a virtual clock (``parsec.sim``). So this module never reads a
clock, never sleeps and never sends: the driver feeds it events stamped with the current time
``now`` (seconds, any monotonic origin) and it answers with the peers to ask next, the next
deadline to wake up at, and — once ``done`` — a ``LookupResult``.

A ``Machine`` (``parsec.kad.machine``: the driver loop and the rules every machine
shares)::

    lookup = Lookup(target, table.closest(target, 20), now=clock())
    while not lookup.done:
        for request in lookup.poll(clock()):      # FIND_NODE / GET_PROVIDERS to request.peer
            send it; its outcome arrives later
        wait for an outcome, or until lookup.next_deadline()
        lookup.on_outcome(request, Reply(closer, providers) or Failure(error), clock())
    lookup.result

``on_response`` / ``on_failure`` are the same events by peer, for callers that hold a
lookup inside another machine (a provide's walk).

Semantics follow go-libp2p-kad-dht's ``query.go`` / ``runLookupWithFollowup``:

* Walk (every known peer is in one ``PeerState``): at most ``alpha`` requests WAITING;
  each ``poll`` asks the closest HEARD peers to fill the free slots. A peer is never asked
  twice, the local peer never. Closer peers from a response enter as HEARD (at most ``2*k``
  per response, as go caps them); a peer keeps the hop and referrer of the response that
  first named it: seeds are hop 1, peers named by a hop-h peer are hop h+1
  (``provider_path`` follows the referrers back).
* ``stall_timeout`` (off by default, as in go): a request unanswered that long frees its
  slot, is skipped by the convergence rule and makes room in the followup as a failure
  would (a "refill" followup short of k answers still waits for it), but its answer still
  counts until ``rpc_timeout`` — the Kademlia paper's "nodes that fail to respond quickly
  are removed from consideration until and unless they do respond".
* After every event the walk's end is checked in go's order:
    1. ``found``     — goal "providers" and ``max_providers`` distinct providers received;
    2. ``exhausted`` — no HEARD and no WAITING peer left (starvation; in a small network
       this is the normal end, it does not mean failure);
    3. ``converged`` — among known peers that are not unreachable, the ``beta`` closest
       have all RESPONDED. (So nothing closer than them is still unasked or pending: any
       such peer would itself be among those ``beta``.)
* Followup, only after ``converged``: up to ``k`` requests at once, not bounded by
  ``alpha``; providers still count (``max_providers`` ends it as ``found``). Its modes —
  ``"once"`` (go's, the default), ``"refill"``, ``"off"`` — are described at ``Followup``.
* Responses or failures arriving after a request timed out or was abandoned are ignored
  (such responses are counted in ``late_responses``); so is every event after ``done``, and
  the result never changes once done. An event for a peer that was never asked, already
  answered or failed is a driver bug: ValueError.
* Time must not go backwards (ValueError). A request sent at ``t`` times out at the first
  event or ``poll`` with ``now >= t + rpc_timeout``.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable
from itertools import islice
from operator import attrgetter

from .constants import ALPHA, BETA, K, RPC_TIMEOUT
from .keyspace import Key, PeerRef
from .machine import Failure, Outcome, Request, RequestKind
from .lookup_types import IGNORED_LATE, PENDING, UNREACHABLE, Candidate, Followup, Goal, LookupResult, PeerState
from .lookup_types import Phase, Reason

_by_distance = attrgetter("distance")


class Lookup:
    """One iterative lookup of ``target``; see the module docstring for the exact rules.

    ``seeds`` are the peers to start from (go starts from the k closest of its routing
    table). ``goal="providers"`` ends as soon as ``max_providers`` distinct providers arrived
    (``max_providers=0``: collect all, never end early); ``followup``: see ``Followup``.
    """

    def __init__(
        self,
        target: Key,
        seeds: Iterable[PeerRef],
        *,
        now: float,
        goal: Goal = "closest",
        alpha: int = ALPHA,
        beta: int = BETA,
        k: int = K,
        rpc_timeout: float = RPC_TIMEOUT,
        self_peer: PeerRef | None = None,
        max_providers: int = 1,
        followup: Followup = "once",
        stall_timeout: float | None = None,
    ) -> None:
        if goal not in ("closest", "providers"):
            raise ValueError(f"unknown goal {goal!r}")
        if min(alpha, beta, k) < 1:
            raise ValueError(f"alpha, beta and k must be >= 1, got {alpha}, {beta}, {k}")
        if not rpc_timeout > 0:
            raise ValueError(f"rpc_timeout must be > 0, got {rpc_timeout}")
        if followup not in ("once", "refill", "off"):
            raise ValueError(f"unknown followup mode {followup!r}")
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, got {stall_timeout}")
        if max_providers < 0:
            raise ValueError(f"max_providers must be >= 0, got {max_providers}")
        self.target = target
        self.goal: Goal = goal
        self.kind: RequestKind = "get_providers" if goal == "providers" else "find_node"
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.rpc_timeout = rpc_timeout
        self.max_providers = max_providers
        self.followup: Followup = followup
        self.stall_timeout = stall_timeout
        self._self_id = None if self_peer is None else self_peer.peer_id

        self._candidates: dict[PeerRef, Candidate] = {}
        self._order: list[Candidate] = []  # every candidate, sorted by distance to target
        self._no_heard_before = 0  # no HEARD candidate sits before this index of _order
        self._heard = 0  # candidates in state HEARD
        self._in_flight: dict[PeerRef, Candidate] = {}  # awaited requests (WAITING)
        self._followup_set: list[Candidate] = []  # mode "once": fixed at convergence
        self._providers: dict[PeerRef, None] = {}
        self._provider_source: Candidate | None = None  # who answered with the first provider
        self._errors: Counter[str] = Counter()

        self._phase: Phase = "walk"
        self._reason: Reason | None = None
        self._walk_reason: Reason | None = None
        self._closest_known_at_walk_end: list[PeerRef] | None = None

        self._now = now
        self._started_at = now
        self._first_response_at: float | None = None
        self._last_response_at: float | None = None
        self._first_provider_at: float | None = None
        self._walk_ended_at: float | None = None
        self._finished_at: float | None = None
        self._rpcs = self._followup_rpcs = 0
        self._responses = self._failures = self._timeouts = self._late = 0

        for seed in seeds:
            self._hear(seed, hop=1)
        self._update()

    # ----------------------------------------------------------------- driver events

    def poll(self, now: float) -> list[Request]:
        """Expire timed-out requests, then return the requests (``kind`` to a peer) to
        send now, closest peer first; the peers are marked WAITING. Empty once done or when
        no slot is free."""
        self._advance(now)
        if self._phase == "walk":
            room = self.alpha - self._holding_slots(now)
            picked = self._closest_heard(room)
        elif self._phase == "followup":
            picked = [c for c in self._followup_targets() if c.state is PeerState.HEARD]
        else:
            return []
        deadline = now + self.rpc_timeout
        stall_at = math.inf if self.stall_timeout is None else now + self.stall_timeout
        for candidate in picked:
            candidate.state = PeerState.WAITING
            candidate.deadline = deadline
            candidate.stall_at = stall_at
            self._in_flight[candidate.peer] = candidate
        self._heard -= len(picked)
        self._rpcs += len(picked)
        if self._phase == "followup":
            self._followup_rpcs += len(picked)
        kind = self.kind
        return [Request(candidate.peer, kind) for candidate in picked]

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        """What came of ``request``: a reply (``on_response``) or a failure."""
        if isinstance(outcome, Failure):
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
        """``peer`` answered with ``closer`` peers (and, for GET_PROVIDERS, ``providers``)."""
        candidate = self._answering(peer, now)
        if candidate is None:
            if not self.done:
                self._late += 1
            return
        candidate.state = PeerState.RESPONDED
        self._responses += 1
        if self._first_response_at is None:
            self._first_response_at = now
        self._last_response_at = now
        self._add_providers(providers, candidate, now)
        if self._phase == "walk" or self.followup == "refill":
            known, hop = self._candidates, candidate.hop + 1
            for closer_peer in islice(closer, 2 * self.k):
                if closer_peer not in known:  # most answers repeat peers already heard of
                    self._hear(closer_peer, hop=hop, referrer=peer)
        self._update()

    def on_failure(self, peer: PeerRef, now: float, error: str = "") -> None:
        """The request to ``peer`` failed (dial error, stream reset, bad message...)."""
        candidate = self._answering(peer, now)
        if candidate is None:
            return
        candidate.state = PeerState.FAILED
        self._failures += 1
        self._errors[error] += 1
        self._update()

    def stop(self, now: float) -> None:
        """End the lookup at once (a strategy decided it knows enough, or the driver gave
        up); reason ``stopped``, no followup. No effect once done."""
        self._advance(now)
        if self._phase == "walk":
            self._mark_walk_end()
        if self._phase != "done":
            self._finish("stopped")

    # ----------------------------------------------------------------- queries

    def next_deadline(self) -> float | None:
        """The earliest timeout of an awaited request: when the driver must call ``poll``
        even if no answer arrives. None when nothing is awaited (or done)."""
        if self.stall_timeout is None:  # no stalls: only the timeouts count
            return min((c.deadline for c in self._in_flight.values()), default=None)
        stalls = (c.stall_at for c in self._in_flight.values() if c.stall_at > self._now)
        return min((*stalls, *(c.deadline for c in self._in_flight.values())), default=None)

    @property
    def done(self) -> bool:
        return self._phase == "done"

    @property
    def returnable(self) -> bool:
        """A lookup answers its caller when it is done."""
        return self._phase == "done"

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def reason(self) -> Reason | None:
        return self._reason

    @property
    def in_flight(self) -> list[PeerRef]:
        """Peers whose answer is awaited. The driver may cancel any other request it still
        has outstanding for this lookup (its answer would be ignored)."""
        return list(self._in_flight)

    def state_of(self, peer: PeerRef) -> PeerState | None:
        """The peer's state in this lookup, None if never heard of."""
        candidate = self._candidates.get(peer)
        return None if candidate is None else candidate.state

    def closest_known(self, n: int | None = None) -> list[PeerRef]:
        """The ``n`` (default k) closest peers not unreachable, whether asked or not."""
        return [c.peer for c in self._reachable(self.k if n is None else n)]

    def closest_responded(self, n: int | None = None) -> list[PeerRef]:
        """The ``n`` (default k) closest peers that responded."""
        responded = (c.peer for c in self._in_state(PeerState.RESPONDED))
        return list(islice(responded, self.k if n is None else n))

    def provider_path(self) -> list[PeerRef]:
        """The chain of peers that led to the first provider record: a seed, the peer it
        named, ..., the peer that answered with the record (empty before one arrived). Each
        was asked only after the previous one answered, so the sum of their round trips is a
        lower bound of the time to the first provider."""
        source = self._provider_source
        return [] if source is None else self.path_to(source.peer)

    def path_to(self, peer: PeerRef) -> list[PeerRef]:
        """The chain of peers that led to ``peer``: a seed, the peer it named, ..., ``peer``
        (empty if never heard of). Each was asked only after the previous one answered."""
        chain: list[PeerRef] = []
        candidate = self._candidates.get(peer)
        while candidate is not None:
            chain.append(candidate.peer)
            candidate = None if candidate.referrer is None else self._candidates[candidate.referrer]
        return chain[::-1]

    @property
    def providers(self) -> list[PeerRef]:
        return list(self._providers)

    @property
    def result(self) -> LookupResult:
        """A snapshot of the outcome and counters; final once ``done``."""
        closest = self.closest_responded()
        if self.goal == "providers" and self._provider_source is not None:
            hops = self._provider_source.hop
        else:
            hops = max((self._candidates[p].hop for p in closest), default=0)
        found = bool(self._providers) if self.goal == "providers" else bool(closest)
        known = self._closest_known_at_walk_end
        listed = self._order[: self.k]
        return LookupResult(
            target=self.target,
            goal=self.goal,
            reason=self._reason,
            closest=closest,
            closest_known=self.closest_known() if known is None else list(known),
            closest_listed=[c.peer for c in listed],
            listed_answered=sum(1 for c in listed if c.state is PeerState.RESPONDED),
            listed_asked=sum(1 for c in listed if c.state is PeerState.RESPONDED or c.state in UNREACHABLE),
            providers=self.providers,
            found=found,
            exhausted=self._reason == "exhausted",
            hops=hops,
            rpcs=self._rpcs,
            followup_rpcs=self._followup_rpcs,
            responses=self._responses,
            failures=self._failures,
            timeouts=self._timeouts,
            late_responses=self._late,
            peers_contacted=sum(1 for c in self._order if c.state is not PeerState.HEARD),
            peers_seen=len(self._candidates),
            started_at=self._started_at,
            first_response_at=self._first_response_at,
            last_response_at=self._last_response_at,
            first_provider_at=self._first_provider_at,
            walk_ended_at=self._walk_ended_at,
            finished_at=self._finished_at,
            errors=dict(self._errors),
        )

    def __repr__(self) -> str:
        return (
            f"Lookup(target={self.target >> 224:08x}…, goal={self.goal}, phase={self._phase}, "
            f"known={len(self._candidates)}, in_flight={len(self._in_flight)}, rpcs={self._rpcs})"
        )

    # ----------------------------------------------------------------- internals

    def _advance(self, now: float) -> None:
        """Move the clock to ``now`` and time out every awaited request due by then."""
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        expired = [c for c in self._in_flight.values() if c.deadline <= now]
        for candidate in expired:
            del self._in_flight[candidate.peer]
            candidate.state = PeerState.TIMED_OUT
        if expired:
            self._timeouts += len(expired)
        if expired or (self.stall_timeout is not None and self._phase != "done"):
            self._update()  # a stall is an event too: it may end the walk or the followup

    def _stalled(self, candidate: Candidate) -> bool:
        return candidate.state is PeerState.WAITING and candidate.stall_at <= self._now

    def _holding_slots(self, now: float) -> int:
        """Awaited requests that still count against ``alpha`` (not stalled by ``now``)."""
        if self.stall_timeout is None:
            return len(self._in_flight)
        return sum(1 for c in self._in_flight.values() if c.stall_at > now)

    def _answering(self, peer: PeerRef, now: float) -> Candidate | None:
        """The awaited candidate an answer from ``peer`` settles, now removed from the
        in-flight set; None if the answer is to be ignored (late, abandoned, or done)."""
        self._advance(now)
        candidate = self._candidates.get(peer)
        if self._phase == "done" or (candidate is not None and candidate.state in IGNORED_LATE):
            return None
        if candidate is None or candidate.state is not PeerState.WAITING:
            state = None if candidate is None else candidate.state.value
            raise ValueError(f"no request in flight to {peer!r} (state: {state})")
        del self._in_flight[peer]
        return candidate

    def _hear(self, peer: PeerRef, hop: int, referrer: PeerRef | None = None) -> None:
        if peer in self._candidates or peer.peer_id == self._self_id:
            return
        candidate = Candidate(peer, peer.key ^ self.target, hop, referrer=referrer)
        self._candidates[peer] = candidate
        position = bisect.bisect_right(self._order, candidate.distance, key=_by_distance)
        self._order.insert(position, candidate)
        if position < self._no_heard_before:
            self._no_heard_before = position
        self._heard += 1

    def _closest_heard(self, n: int) -> list[Candidate]:
        """The ``n`` closest HEARD candidates, scanning from the first one that may be
        HEARD (a peer never goes back to HEARD, so everything before it stays settled)."""
        order = self._order
        start, end = self._no_heard_before, len(order)
        while start < end and order[start].state is not PeerState.HEARD:
            start += 1
        self._no_heard_before = start
        picked: list[Candidate] = []
        for position in range(start, end):
            if len(picked) >= n:
                break
            candidate = order[position]
            if candidate.state is PeerState.HEARD:
                picked.append(candidate)
        return picked

    def _in_state(self, state: PeerState) -> Iterable[Candidate]:
        return (c for c in self._order if c.state is state)

    def _reachable(self, n: int, *, stalled: bool = True) -> list[Candidate]:
        """The ``n`` closest candidates not unreachable (and, with ``stalled=False``, not
        stalled either)."""
        return list(islice((c for c in self._order
                            if c.state not in UNREACHABLE and (stalled or not self._stalled(c))), n))

    def _followup_targets(self) -> list[Candidate]:
        """The peers the followup must settle: fixed at convergence in mode "once", the
        current k closest neither unreachable nor stalled in mode "refill" (a stalled peer
        makes room for the next one, as a failed one does)."""
        return self._followup_set if self.followup == "once" else self._reachable(self.k, stalled=False)

    def _add_providers(self, providers: Iterable[PeerRef], source: Candidate, now: float) -> None:
        for provider in providers:
            if self.max_providers and len(self._providers) >= self.max_providers:
                return
            if provider in self._providers:
                continue
            if not self._providers:
                self._first_provider_at = now
                self._provider_source = source
            self._providers[provider] = None

    def _enough_providers(self) -> bool:
        return (
            self.goal == "providers"
            and self.max_providers > 0
            and len(self._providers) >= self.max_providers
        )

    def _beta_closest_responded(self) -> bool:
        """go's isLookupTermination: the ``beta`` closest not-unreachable peers all RESPONDED."""
        checked = 0
        for candidate in self._order:
            if candidate.state in UNREACHABLE or self._stalled(candidate):
                continue
            if candidate.state is not PeerState.RESPONDED:
                return False
            checked += 1
            if checked == self.beta:
                break
        return True

    def _walk_end_reason(self) -> Reason | None:
        if self._enough_providers():
            return "found"
        if self._heard == 0 and not self._in_flight:
            return "exhausted"
        if self._beta_closest_responded():
            return "converged"
        return None

    def _update(self) -> None:
        """Re-check the end conditions after any state change."""
        if self._phase == "walk":
            reason = self._walk_end_reason()
            if reason is not None:
                self._end_walk(reason)
        elif self._phase == "followup":
            if self._enough_providers():
                self._finish("found")
            elif self._followup_settled():
                assert self._walk_reason is not None
                self._finish(self._walk_reason)

    def _followup_settled(self) -> bool:
        """No followup target is awaited any more. A stalled request counts as settled only
        in mode "refill" once k peers answered in its place; with fewer (every peer the walk
        knows was asked) it is waited for until it answers or times out, as go waits for
        every followup request."""
        targets = self._followup_targets()
        if any(c.state in PENDING and not self._stalled(c) for c in targets):
            return False
        if self.followup != "refill" or len(targets) >= self.k:
            return True
        return not any(self._stalled(c) for c in self._in_flight.values())

    def _mark_walk_end(self) -> None:
        self._walk_ended_at = self._now
        self._closest_known_at_walk_end = self.closest_known()

    def _end_walk(self, reason: Reason) -> None:
        self._mark_walk_end()
        self._walk_reason = reason
        pending = [c for c in self._reachable(self.k) if c.state in PENDING]
        if reason != "converged" or self.followup == "off" or not pending:
            self._finish(reason)
            return
        self._phase = "followup"
        if self.followup == "once":
            self._followup_set = pending
            settling = {c.peer for c in pending}
            for candidate in [c for c in self._in_flight.values() if c.peer not in settling]:
                self._abandon(candidate)

    def _abandon(self, candidate: Candidate) -> None:
        del self._in_flight[candidate.peer]
        candidate.state = PeerState.ABANDONED

    def _finish(self, reason: Reason) -> None:
        for candidate in list(self._in_flight.values()):
            self._abandon(candidate)
        self._phase = "done"
        self._reason = reason
        self._finished_at = self._now
