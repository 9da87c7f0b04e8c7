"""What a lookup is and what it yields: goals, phases, peer states and the result record.

Kept apart from the state machine (``lookup``) so the strategies and the estimator can name
a lookup's outcome without the machinery that produced it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from .keyspace import Key, PeerRef

Goal = Literal["closest", "providers"]
Phase = Literal["walk", "followup", "done"]
Reason = Literal["found", "converged", "exhausted", "stopped"]
Followup = Literal["once", "refill", "off"]


class PeerState(enum.Enum):
    """Where a peer stands in one lookup (go-libp2p-kad-dht's qpeerset states, plus two)."""

    HEARD = "heard"
    WAITING = "waiting"
    RESPONDED = "responded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"


UNREACHABLE = frozenset({PeerState.FAILED, PeerState.TIMED_OUT})
"""States that exclude a peer from the closest-known set and from the termination rule."""


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
