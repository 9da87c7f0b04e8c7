"""The scheduler loop: discover → readiness → provide → retrievals → record, per round.

Talks to servers only over HTTP and to the fleet only through the database, as the
contract says, so a Go parsec server is scheduled like ours. Every issued operation ends
as exactly one record (success, server-reported error, or scheduler-side failure).

Stopping (``stop`` set: SIGTERM from ``ray job stop``, ``--duration`` over) starts no new
round; operations already issued get ``stop_grace`` seconds to finish, then are cancelled
and recorded with the error ``CANCELLED`` — Ray's job stop SIGKILLs 3 s after SIGTERM, so
waiting out a provide (up to minutes) is not an option, and dropping it would lose the
fact that it was issued. Each operation is announced to the sink (``Sink.issue``) before
its request leaves, so a durable sink can record it even if this process is SIGKILLed.

While Postgres is unreachable the loop goes on measuring the nodes it discovered last
(readiness is still asked over HTTP); the records wait in the durable sink's spool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from parsec.cids import cid_v0_for
from parsec.config import SchedulerSettings
from parsec.scheduler.client import ServerClient, ServerReply, node_url
from parsec.scheduler.rounds import RoundRobin, next_round_start, plan_round
from parsec.scheduler.sinks import Sink
from parsec.store.db import is_unreachable
from parsec.store.journal import Intent
from parsec.store.records import MeasurementRecord

def _secret(value) -> str | None:
    """The plain text of an optional ``SecretStr`` (only ever put in a request header)."""
    return value.get_secret_value() if value is not None else None


log = logging.getLogger("parsec.scheduler")
CANCELLED = "cancelled: the scheduler stopped before the server answered"


class SchedulerMetrics:
    """The original scheduler's Prometheus metrics, on a registry of their own.

    Names as the Go scheduler exports them: ``parsec_active_nodes`` (gauge) and
    ``parsec_issued_provides`` / ``parsec_issued_retrievals`` by ``success`` — client_golang
    exports those counters without a ``_total`` suffix while prometheus_client would add one,
    so they are exposed untyped under exactly the Go names (``IssuedCounts``): a dashboard
    made for the Go scheduler reads ours unchanged.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.active_nodes = Gauge("parsec_active_nodes", "Ready nodes in the last round", registry=self.registry)
        self.issued = IssuedCounts()
        self.registry.register(self.issued)

    def count(self, records: list[MeasurementRecord]) -> None:
        """One issued operation (its records: one per measurement of the reply)."""
        self.issued.count(records[0].kind, all(record.error is None for record in records))


class IssuedCounts(Collector):
    """Operations issued, by kind and success, as ``parsec_issued_provides`` /
    ``parsec_issued_retrievals`` (untyped, so no suffix is added to the Go names)."""

    NAMES = {"provide": ("parsec_issued_provides", "Number of started provide operations."),
             "retrieval": ("parsec_issued_retrievals", "Number of started retrieval operations.")}

    def __init__(self) -> None:
        self._counts: dict[tuple[str, bool], int] = {}
        self._lock = threading.Lock()

    def count(self, kind: str, success: bool) -> None:
        with self._lock:
            self._counts[(kind, success)] = self._counts.get((kind, success), 0) + 1

    def collect(self):
        with self._lock:
            counts = dict(self._counts)
        for kind, (name, documentation) in self.NAMES.items():
            metric = Metric(name, documentation, "unknown")
            for success in (True, False):
                if (kind, success) in counts:
                    metric.add_sample(name, {"success": str(success).lower()}, counts[(kind, success)])
            yield metric


@dataclass
class RoundReport:
    """What one round did, for progress displays and logs."""

    number: int
    ready: int = 0
    skipped: str = ""
    provide: MeasurementRecord | None = None
    retrievals: list[MeasurementRecord] = field(default_factory=list)
    offline: list[int] = field(default_factory=list)


async def register_scheduler(repo, settings: SchedulerSettings, dependencies: dict | None = None) -> int:
    """The ``schedulers_ecs`` row of one loop's start: its id tags every record the loop
    writes (and names its Parquet files), so a job registers it before building the sinks."""
    deps = {"implementation": "parsec-py", "pid": os.getpid(), **(dependencies or {})}
    return await repo.insert_scheduler(list(settings.fleets), deps)


class Scheduler:
    """One scheduler loop over a set of fleets (one ``schedulers_ecs`` row per start)."""

    def __init__(self, settings: SchedulerSettings, repo, sink: Sink, *,
                 metrics: SchedulerMetrics | None = None,
                 on_round: Callable[[RoundReport], None] | None = None,
                 scheduler_id: int | None = None) -> None:
        """``scheduler_id``: the ``schedulers_ecs`` row already registered for this loop
        (``register_scheduler``); None registers one at the first ``run``."""
        self.settings = settings
        self.repo = repo
        self.sink = sink
        self.metrics = metrics or SchedulerMetrics()
        self.on_round = on_round
        self.cursor = RoundRobin()
        self.scheduler_id = scheduler_id
        self._client: ServerClient | None = None
        self._nodes = None  # the last discovery, measured on while the database is unreachable
        self._abort = asyncio.Event()  # set stop_grace seconds after stop: cancel what is in flight

    async def register(self, dependencies: dict | None = None) -> int:
        self.scheduler_id = await register_scheduler(self.repo, self.settings, dependencies)
        return self.scheduler_id

    async def run(self, stop: asyncio.Event | None = None) -> list[RoundReport]:
        """Run rounds until ``settings.rounds`` are done or ``stop`` is set."""
        if self.scheduler_id is None:
            await self.register()
        stop = stop or asyncio.Event()
        self._abort = asyncio.Event()
        watcher = asyncio.create_task(self._abort_after_grace(stop))
        # x-scheduler-id: the loop's fleets joined by ',', as the Go scheduler sends it (servers
        # label their metrics with it); the schedulers_ecs id is in the database
        self._client = ServerClient(",".join(self.settings.fleets), timeout=self.settings.http_timeout,
                                    readiness_timeout=self.settings.readiness_timeout,
                                    auth_token=_secret(self.settings.auth_token))
        reports: list[RoundReport] = []
        started: float | None = None
        number = 0
        try:
            while not stop.is_set() and (self.settings.rounds is None or number < self.settings.rounds):
                start_at = next_round_start(started, self.settings.interval, time.monotonic())
                if await _wait(stop, start_at - time.monotonic()):
                    break
                started = time.monotonic()
                number += 1
                report = await self.run_round(number)
                reports.append(report)
                if self.on_round:
                    self.on_round(report)
        finally:
            watcher.cancel()
            await self._client.aclose()
            await self.sink.flush()
        return reports

    async def _abort_after_grace(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(self.settings.stop_grace)
        self._abort.set()

    async def _until_abort(self, awaitable):
        """(True, result) when ``awaitable`` finished first; (False, None) when it was
        cancelled because the scheduler is stopping."""
        work = asyncio.ensure_future(awaitable)
        abort = asyncio.ensure_future(self._abort.wait())
        try:
            await asyncio.wait({work, abort}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        finally:
            abort.cancel()
        if work.done():
            return True, work.result()
        work.cancel()
        await asyncio.wait({work})  # let it unwind (closes its HTTP request)
        return False, None

    async def _measure(self, step: str, call, cid: str) -> ServerReply:
        """An issued operation's reply, or a CANCELLED reply when the scheduler stopped first."""
        started = time.perf_counter()
        finished, reply = await self._until_abort(call)
        if finished:
            return reply
        return ServerReply(step, time.perf_counter() - started, CANCELLED, cid, 0)

    async def run_round(self, number: int) -> RoundReport:
        report = RoundReport(number)
        nodes = await self._discover()
        if nodes is None:
            report.skipped = "database unreachable and no nodes discovered yet"
            return report
        finished, readiness = await self._until_abort(
            asyncio.gather(*(self._client.ready(node_url(n.ip_address, n.server_port)) for n in nodes)))
        if not finished:
            report.skipped = "scheduler stopped"
            return report
        ready = [node for node, ok in zip(nodes, readiness) if ok]
        report.offline = [node.id for node, ok in zip(nodes, readiness) if not ok]
        if report.offline:
            try:
                await self.repo.mark_offline(report.offline)
            except Exception as error:
                if not is_unreachable(error):
                    raise
                log.warning("cannot mark nodes %s offline, database unreachable: %s", report.offline, error)
        report.ready = len(ready)
        self.metrics.active_nodes.set(len(ready))
        plan = plan_round(ready, self.cursor)
        if plan is None:
            report.skipped = f"{len(ready)} ready node(s) of {len(nodes)} discovered; need 2"
            log.info("round %d skipped: %s", number, report.skipped)
            return report
        content = os.urandom(self.settings.content_bytes)
        cid, _ = cid_v0_for(content)
        url = node_url(plan.provider.ip_address, plan.provider.server_port)
        intent = self._issue("provide", plan.provider, cid, number)
        reply = await self._measure("provide", self._client.provide(url, content, cid), cid)
        provided = self._records(intent, reply)
        report.provide = provided[0]
        await self._store(provided)
        if any(record.error is not None for record in provided) or self._abort.is_set():
            return report  # as the original: no retrievals after a failed step
        results = await asyncio.gather(*(self._probe(node, reply.cid, number) for node in plan.retrievers))
        report.retrievals = [records[0] for batch in results for records in batch]
        await self._store([record for batch in results for records in batch for record in records])
        return report

    async def _probe(self, node, cid: str, number: int) -> list[list[MeasurementRecord]]:
        """The records of each retrieval issued to ``node`` (one per measurement of its reply)."""
        issued = []
        for _ in range(self.settings.probes):
            if self._abort.is_set():
                break  # not issued: no record
            intent = self._issue("retrieval", node, cid, number)
            reply = await self._measure("retrieval", self._client.retrieve(node_url(node.ip_address, node.server_port), cid), cid)
            issued.append(self._records(intent, reply))
        return issued

    async def _discover(self):
        """This round's nodes; the last discovery's while the database is unreachable
        (None before any)."""
        try:
            self._nodes = await self.repo.discover_nodes(list(self.settings.fleets), self.settings.heartbeat_window)
        except Exception as error:
            if not is_unreachable(error):
                raise
            log.warning("database unreachable (%s); measuring the nodes discovered last", error)
        return self._nodes

    def _issue(self, kind: str, node, cid: str, number: int) -> Intent:
        """An operation about to be issued, announced to the sink first (the durable one
        writes it down, so that even a SIGKILL cannot make it vanish)."""
        intent = Intent(op_id=uuid.uuid4().hex, kind=kind, scheduler_id=self.scheduler_id, node_id=node.id,
                        fleet=node.fleet, region=node.region, round=number, cid=cid,
                        issued_at=datetime.now(timezone.utc))
        self.sink.issue(intent)
        return intent

    def _records(self, intent: Intent, reply: ServerReply) -> list[MeasurementRecord]:
        """One record per measurement of the reply, as the original stores them: the first
        under the operation's op_id, each further step under an op_id derived from it (the
        same every time, so a record written twice is still stored once)."""
        records = [self._record(intent, measurement, _step_op_id(intent.op_id, index))
                   for index, measurement in enumerate(reply.all())]
        self.metrics.count(records)
        return records

    def _record(self, intent: Intent, reply: ServerReply, op_id: str) -> MeasurementRecord:
        record = MeasurementRecord(
            op_id=op_id, kind=intent.kind, scheduler_id=intent.scheduler_id, node_id=intent.node_id,
            fleet=intent.fleet, region=intent.region, round=intent.round, rt_size=reply.rt_size,
            duration=reply.duration_s, cid=reply.cid, error=reply.error,
            step=reply.step or intent.kind, created_at=datetime.now(timezone.utc), trace=reply.trace,
        )
        return record

    async def _store(self, records: list[MeasurementRecord]) -> None:
        if records:
            await self.sink.write(records)


def _step_op_id(op_id: str, index: int) -> str:
    """The op_id of measurement ``index`` of an operation's reply (0: the operation's own)."""
    return op_id if index == 0 else uuid.uuid5(uuid.UUID(op_id), f"measurement/{index}").hex


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False
