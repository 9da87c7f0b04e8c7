"""The scheduler's rounds on the virtual clock, written as the real scheduler's records.

The round logic is the real scheduler's (``parsec.scheduler.rounds``: ``plan_round`` over
the ready servers ordered by id, ``RoundRobin`` for the publisher, ``next_round_start``
for the pace), so each region publishes in turn and every other ready server of the fleet
looks the record up, ``probes`` times in a row, all retrievers at once. Each measurement
becomes one ``parsec.store.records.MeasurementRecord`` exactly as ``Scheduler._record``
builds it (trace JSON included), with ``created_at`` on the virtual clock and ``op_id``
drawn from the run's seed, so the same seed writes the same records.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from parsec.cids import cid_v0_for
from parsec.scheduler.rounds import RoundRobin, next_round_start, plan_round
from parsec.sim.engine import EventLoop, Process
from parsec.sim.node import Measurement, SimServer
from parsec.store.records import MeasurementRecord

CONTENT_BYTES = 1024  # the scheduler's default: 1024 random bytes per provide


@dataclass
class RoundReport:
    """What one simulated round did, for progress lines."""

    fleet: str
    number: int
    at: float
    ready: int = 0
    skipped: str = ""
    records: list[MeasurementRecord] = field(default_factory=list)


class FleetScheduler:
    """One scheduler loop over one fleet's servers (one ``schedulers_ecs`` id)."""

    def __init__(self, loop: EventLoop, servers: Sequence[SimServer], *, scheduler_id: int, rounds: int,
                 interval: float, probes: int, start: datetime, rng: random.Random,
                 on_round: Callable[[RoundReport], None]) -> None:
        self.loop = loop
        self.servers = list(servers)
        self.scheduler_id = scheduler_id
        self.rounds = rounds
        self.interval = interval
        self.probes = probes
        self.start = start
        self.rng = rng
        self.on_round = on_round
        self.cursor = RoundRobin()

    def run(self) -> Process:
        started: float | None = None
        for number in range(1, self.rounds + 1):
            start_at = next_round_start(started, self.interval, self.loop.now)
            if start_at > self.loop.now:
                yield start_at - self.loop.now
            started = self.loop.now
            report = yield from self.run_round(number)
            self.on_round(report)

    def run_round(self, number: int) -> Process:
        fleet = self.servers[0].fleet if self.servers else "-"
        report = RoundReport(fleet, number, self.loop.now)
        ready = [server for server in self.servers if server.ready()]
        report.ready = len(ready)
        plan = plan_round(ready, self.cursor)
        if plan is None:
            report.skipped = f"{len(ready)} ready node(s) of {len(self.servers)}; need 2"
            return report
        cid, key = cid_v0_for(self.rng.randbytes(CONTENT_BYTES))
        provider: SimServer = plan.provider  # type: ignore[assignment]
        measured = yield self.loop.spawn(provider.provide(key))
        report.records.append(self._record("provide", provider, measured, number, cid))
        if measured.error is not None:
            return report
        probes = [self.loop.spawn(self._probe(server, key, cid, number)) for server in plan.retrievers]
        for batch in (yield self.loop.all_of(probes)):
            report.records.extend(batch)
        return report

    def _probe(self, server: SimServer, key: bytes, cid: str, number: int) -> Process:
        records = []
        for _ in range(self.probes):
            measured = yield self.loop.spawn(server.retrieve(key))
            records.append(self._record("retrieval", server, measured, number, cid))
        return records

    def _record(self, kind: str, server: SimServer, measured: Measurement, number: int, cid: str) -> MeasurementRecord:
        trace = None if measured.trace is None else json.dumps(measured.trace, separators=(",", ":"))
        return MeasurementRecord(
            op_id=uuid.UUID(int=self.rng.getrandbits(128), version=4).hex, kind=kind,  # type: ignore[arg-type]
            scheduler_id=self.scheduler_id, node_id=server.id, fleet=server.fleet, region=server.region,
            round=number, rt_size=measured.rt_size, duration=measured.duration, cid=cid, error=measured.error,
            step=kind, created_at=self.start + timedelta(seconds=self.loop.now), trace=trace,
        )
