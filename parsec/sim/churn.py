"""Reachable peers leave and come back during a run, on the virtual clock.

The testbed's churn model (``parsec.testbed.churn``, which ``sim/`` may not import: the
testbed sits a layer above): every reachable peer alternates online sessions and offline
gaps, both exponential with the median ``median_session`` (default 2 h: half of the new
peers leave within 2 h, ProbeLab RFM 2), and all are online at the start. A peer that left
keeps its stale entries in every table (dials to it are refused) and its records are out
of reach until it returns with the same key, as a restarted node. Exponential sessions are
the memoryless simplification of the heavy-tailed uptimes that were measured; what this
gets right is the rate at which entries go stale during a run.
"""

from __future__ import annotations

import math
import random

from parsec.sim.engine import EventLoop
from parsec.sim.population import Population


class Churn:
    """Schedules every reachable peer's transitions on ``loop`` (none if the median is 0)."""

    def __init__(self, loop: EventLoop, population: Population, median_session: float, rng: random.Random) -> None:
        if median_session < 0:
            raise ValueError(f"median_session must be >= 0, got {median_session}")
        self.loop = loop
        self.population = population
        self.rng = rng
        self.rate = math.log(2) / median_session if median_session > 0 else 0.0
        self.leaves = self.returns = 0
        if self.rate:
            for index in population.reachable_indices:
                loop.at(loop.now + rng.expovariate(self.rate), self._flip, index)

    def _flip(self, index: int) -> None:
        online = self.population.online
        online[index] ^= 1
        if online[index]:
            self.returns += 1
        else:
            self.leaves += 1
        self.loop.at(self.loop.now + self.rng.expovariate(self.rate), self._flip, index)

    @property
    def offline(self) -> int:
        """Reachable peers offline now."""
        population = self.population
        return sum(1 for index in population.reachable_indices if not population.online[index])
