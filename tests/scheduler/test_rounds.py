"""Round logic: deterministic round-robin over ready nodes, skips, interval pacing."""

from dataclasses import dataclass

import pytest

from parsec.scheduler.rounds import RoundRobin, next_round_start, plan_round


@dataclass(frozen=True)
class N:
    id: int


def test_round_robin_visits_ready_nodes_in_id_order_and_wraps():
    cursor = RoundRobin()
    ready = [N(7), N(3), N(5)]
    assert [cursor.next(ready).id for _ in range(5)] == [3, 5, 7, 3, 5]


def test_round_robin_survives_nodes_joining_and_leaving():
    cursor = RoundRobin()
    assert cursor.next([N(1), N(2), N(3)]).id == 1
    assert cursor.next([N(1), N(3)]).id == 3  # 2 left: the next id after 1
    assert cursor.next([N(1), N(3), N(4)]).id == 4  # 4 joined after 3
    assert cursor.next([N(1)]).id == 1


def test_plan_needs_two_ready_nodes():
    cursor = RoundRobin()
    assert plan_round([], cursor) is None
    assert plan_round([N(1)], cursor) is None
    plan = plan_round([N(2), N(1), N(3)], cursor)
    assert plan.provider.id == 1 and [n.id for n in plan.retrievers] == [2, 3]


def test_round_robin_rejects_empty():
    with pytest.raises(ValueError):
        RoundRobin().next([])


def test_at_most_one_round_start_per_interval():
    assert next_round_start(None, 60, now=10) == 10
    assert next_round_start(10, 60, now=20) == 70
    assert next_round_start(10, 60, now=100) == 100  # a long round: start the next at once
