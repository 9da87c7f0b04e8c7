"""What a lookup is and what it yields: goals, phases, peer states and the result record.

Kept apart from the state machine (``lookup``) so the strategies and the estimator can name
a lookup's outcome without the machinery that produced it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Literal

from .keyspace import Key, PeerRef

Goal = Literal["closest", "providers"]
Phase = Literal["walk", "followup", "done"]
Reason = Literal["found", "converged", "exhausted", "stopped"]
Followup = Literal["once", "refill", "off"]
"""What a lookup does after its walk converged (a walk that ended otherwise ends the lookup):

- ``"once"`` (default; go's runLookupWithFollowup, used by its GetClosestPeers, Provide and
  FindProviders): the k closest not-unreachable peers still HEARD or WAITING at convergence
  are each asked once, all at once (not bounded by alpha); the lookup ends when every one
  of them has answered, failed or timed out. Closer peers named in followup answers are not
  followed, and requests WAITING outside that set are ABANDONED. One difference from go: go
  cancels the walk's in-flight requests and asks those peers again; here the original
  request is kept.
- ``"refill"`` (the completion rule of rust-libp2p's ClosestPeersIter): it ends only when
  the k closest not-unreachable known peers have all RESPONDED (or no such peer is left): a
  peer of that set that fails or stalls is replaced by the next closest, closer peers in
  answers are followed. Stalled requests are abandoned at the end only if k peers
  answered in their place; otherwise they are waited for until they answer or time out,
  as go waits for every followup request. Robust top-k under churn, for more RPCs.
- ``"off"``: end at convergence; at most ``alpha`` requests are ever in flight.
"""


class PeerState(enum.Enum):
    """Where a peer stands in one lookup (go-libp2p-kad-dht's qpeerset states, plus two):
    HEARD (known, not asked), WAITING (request in flight), RESPONDED, FAILED (the driver
    reported an error) or TIMED_OUT (no answer within ``rpc_timeout``; FAILED and TIMED_OUT
    are go's "unreachable"), or ABANDONED (request still in flight when the walk ended and
    no longer awaited)."""

    HEARD = "heard"
    WAITING = "waiting"
    RESPONDED = "responded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"


UNREACHABLE = frozenset({PeerState.FAILED, PeerState.TIMED_OUT})
"""States that exclude a peer from the closest-known set and from the termination rule."""
PENDING = frozenset({PeerState.HEARD, PeerState.WAITING})
IGNORED_LATE = frozenset({PeerState.TIMED_OUT, PeerState.ABANDONED})  # answers then are late


@dataclass(slots=True)
class Candidate:
    """One peer as a lookup sees it (mutable: the lookup moves it through the states)."""

    peer: PeerRef
    distance: int  # XOR distance to the target
    hop: int
    state: PeerState = PeerState.HEARD
    deadline: float = math.inf
    stall_at: float = math.inf  # from then on the request no longer holds an alpha slot
    referrer: PeerRef | None = None  # the peer whose answer first named this one (None: seed)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a lookup found and what it cost. Times are in the driver's clock.

    ``closest``: the k closest peers that responded, closest first.
    ``closest_known``: the k closest peers not unreachable (responded, or heard/waiting)
    when the walk ended — go's lookup result, the peers its Provide sends ADD_PROVIDER to.
    ``closest_listed``: the k closest peers heard of, whatever their state — what the
    network's routing tables list near the target, reachable or not; ``listed_answered`` of
    them answered out of ``listed_asked`` that were asked (answered, failed or timed out).
    ``providers``: distinct provider records, in arrival order (at most ``max_providers``
    when that is > 0).
    ``found``: goal "providers" — at least one provider; goal "closest" — at least one
    peer responded.
    ``hops``: the hop of the peer that returned the first provider; otherwise the largest hop
    among ``closest`` (0 if none).
    ``rpcs`` counts requests sent (``followup_rpcs`` of them in the followup);
    ``peers_contacted`` equals ``rpcs`` because no peer is asked twice; ``peers_seen`` counts
    every distinct peer the lookup heard of. ``errors`` tallies ``on_failure`` error strings.
    ``reason``, ``walk_ended_at`` and ``finished_at`` are None while the lookup runs.
    """

    target: Key
    goal: Goal
    reason: Reason | None
    closest: list[PeerRef]
    closest_known: list[PeerRef]
    closest_listed: list[PeerRef]
    listed_answered: int
    listed_asked: int
    providers: list[PeerRef]
    found: bool
    exhausted: bool
    hops: int
    rpcs: int
    followup_rpcs: int
    responses: int
    failures: int
    timeouts: int
    late_responses: int
    peers_contacted: int
    peers_seen: int
    started_at: float
    first_response_at: float | None
    last_response_at: float | None
    first_provider_at: float | None
    walk_ended_at: float | None
    finished_at: float | None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, None while running."""
        return None if self.finished_at is None else self.finished_at - self.started_at
