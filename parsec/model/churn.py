"""When peers leave and come back: a pure schedule, fed ``now``, no sockets (the testbed
runs it on real peers, the simulator on its virtual clock).

Why this model: on the public DHT half of the new peers are gone within two hours (ProbeLab
RFM 2, "Uptime and Churn": *50 % of new peers leaving after 2h*), and the peers that left
are not forgotten — their entries stay in other peers' routing tables until a dial to them
fails. So a testbed peer alternates online sessions and offline gaps, both drawn from an
exponential distribution with a configurable median (default 2 h, the published one). A
peer that leaves closes its host: dials to it are refused and every table that lists it is
stale. When it comes back it has its old identity and address (a restarted node), so the
stale entries are good again, and it announces itself with a self-lookup.

Exponential sessions are the memoryless simplification of the heavy-tailed uptimes that
were measured; what the testbed gets right is the rate at which entries go stale.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transition:
    """Peer ``index`` goes offline (``online`` False) or comes back (True) at ``at``."""

    at: float
    index: int
    online: bool


class ChurnSchedule:
    """Online/offline transitions of ``peers`` peers, all online at ``now``.

    ``median_session``: median seconds of an online session and of an offline gap; 0
    disables churn (no transition is ever due).
    """

    def __init__(self, peers: int, median_session: float, *, now: float, rng: random.Random | None = None) -> None:
        if peers < 0:
            raise ValueError(f"peers must be >= 0, got {peers}")
        if median_session < 0:
            raise ValueError(f"median_session must be >= 0, got {median_session}")
        self.median_session = median_session
        self._rng = rng or random.Random()
        self._online = [True] * peers
        self._queue: list[tuple[float, int]] = []
        self.leaves = self.returns = 0
        if median_session > 0:
            for index in range(peers):
                heapq.heappush(self._queue, (now + self._draw(), index))

    def _draw(self) -> float:
        """An exponential duration with the configured median (mean = median / ln 2)."""
        return self._rng.expovariate(math.log(2) / self.median_session)

    def next_at(self) -> float | None:
        """When the next transition is due (None: never)."""
        return self._queue[0][0] if self._queue else None

    def due(self, now: float) -> list[Transition]:
        """Every transition due by ``now``, in time order; each schedules the peer's next."""
        transitions = []
        while self._queue and self._queue[0][0] <= now:
            at, index = heapq.heappop(self._queue)
            online = not self._online[index]
            self._online[index] = online
            if online:
                self.returns += 1
            else:
                self.leaves += 1
            transitions.append(Transition(at, index, online))
            heapq.heappush(self._queue, (at + self._draw(), index))
        return transitions

    def online(self, index: int) -> bool:
        return self._online[index]

    @property
    def offline_count(self) -> int:
        return self._online.count(False)
