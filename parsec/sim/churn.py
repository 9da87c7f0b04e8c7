"""Reachable peers leave and come back during a run, on the virtual clock.

The model is the testbed's, the very schedule it runs on real peers
(``parsec.model.churn.ChurnSchedule``: sessions and gaps exponential with median
``median_session``, default 2 h, ProbeLab RFM 2), over the simulated population's reachable
peers. A peer that left keeps its stale entries in every table (dials to it are refused)
and its records are out of reach until it returns with the same key, as a restarted node.
"""

from __future__ import annotations

import random

from parsec.model.churn import ChurnSchedule
from parsec.sim.engine import EventLoop
from parsec.sim.population import Population


class Churn:
    """Applies a ``ChurnSchedule`` of every reachable peer to ``population`` on ``loop``."""

    def __init__(self, loop: EventLoop, population: Population, median_session: float, rng: random.Random) -> None:
        self.loop = loop
        self.population = population
        self._peers = list(population.reachable_indices)
        self.schedule = ChurnSchedule(len(self._peers), median_session, now=loop.now, rng=rng)
        self._wake()

    def _wake(self) -> None:
        at = self.schedule.next_at()
        if at is not None:
            self.loop.at(at, self._apply)

    def _apply(self) -> None:
        online = self.population.online
        for transition in self.schedule.due(self.loop.now):
            online[self._peers[transition.index]] = 1 if transition.online else 0
        self._wake()

    @property
    def leaves(self) -> int:
        return self.schedule.leaves

    @property
    def returns(self) -> int:
        return self.schedule.returns

    @property
    def offline(self) -> int:
        """Reachable peers offline now."""
        return self.schedule.offline_count
