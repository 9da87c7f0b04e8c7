"""The round logic of a parsec scheduler, without I/O.

Interface.md lists the original's defects and the fixes we want; both fixes live here:
nodes are ordered deterministically (by ``nodes_ecs.id``) and the provider is chosen
round-robin among the *ready* nodes only (the original mixed indexes of all nodes and of
ready nodes). The cursor remembers the last provider's id, so a node joining or leaving
does not reshuffle the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class NodeLike(Protocol):
    id: int


@dataclass(frozen=True)
class RoundPlan:
    provider: NodeLike
    retrievers: tuple[NodeLike, ...]


class RoundRobin:
    """Picks the ready node after the previous provider, by id, wrapping around."""

    def __init__(self) -> None:
        self.last_id: int | None = None

    def next(self, ready: Sequence[NodeLike]) -> NodeLike:
        if not ready:
            raise ValueError("no ready nodes")
        ordered = sorted(ready, key=lambda node: node.id)
        if self.last_id is not None:
            for node in ordered:
                if node.id > self.last_id:
                    self.last_id = node.id
                    return node
        self.last_id = ordered[0].id
        return ordered[0]


def plan_round(ready: Sequence[NodeLike], cursor: RoundRobin) -> RoundPlan | None:
    """Who provides and who retrieves this round; None when fewer than two are ready."""
    if len(ready) < 2:
        return None
    provider = cursor.next(ready)
    retrievers = tuple(sorted((n for n in ready if n.id != provider.id), key=lambda n: n.id))
    return RoundPlan(provider, retrievers)


def next_round_start(previous_start: float | None, interval: float, now: float) -> float:
    """At most one round start per interval; a long round starts the next at once."""
    if previous_start is None:
        return now
    return max(now, previous_start + interval)
