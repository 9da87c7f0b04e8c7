"""Where a scheduler's records go: Postgres and Parquet, durably.

``DurableSink`` is what a scheduler job runs: every operation goes through the journal
(``parsec.store.journal``) before it is issued and again once its record is known, then
the very same records go to Parquet at once (a local file) and to Postgres in the
background, retried every ``PARSEC_SCHEDULER_SPOOL_RETRY`` while the database is
unreachable — which is what lets the tests check that Postgres and Parquet agree one to
one. Rounds never wait for Postgres, a database outage costs no measurement, and a killed
scheduler's successor finds everything it left behind in the journal (``recover``).
``PostgresSink`` alone serves tests of the round logic.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from pathlib import Path

from parsec.store.db import is_unreachable
from parsec.store.journal import Intent, Journal
from parsec.store.records import MeasurementRecord

log = logging.getLogger("parsec.scheduler")


class Sink:
    """The interface; ``issue`` hears of each operation before it is issued (a no-op here)."""

    left_in_spool = 0  # records Postgres lacked when the sink was flushed (a durable sink keeps them)

    def issue(self, intent: Intent) -> None:
        return None

    async def write(self, records: list[MeasurementRecord]) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        return None


class PostgresSink(Sink):
    """Batches go to provides_ecs / retrievals_ecs (+ measurements) via COPY."""

    def __init__(self, repo) -> None:
        self.repo = repo
        self.written = 0

    async def write(self, records: list[MeasurementRecord]) -> None:
        self.written += await self.repo.write_measurements(records)


def journal_path(spool_dir: Path, fleets: list[str], database_address: str) -> Path:
    """One journal per scheduler loop: its fleet set and database (a digest of the address),
    so records never reach another database than the one they were measured for."""
    digest = hashlib.sha256(database_address.encode()).hexdigest()[:8]
    return Path(spool_dir) / f"scheduler-{'+'.join(sorted(fleets))}-{digest}.jsonl"


class DurableSink(Sink):
    """Journal first; Parquet at once; Postgres in the background, retried while unreachable.

    ``journal`` must be open (its lock held). ``parquet`` is a ``ParquetSink`` or None.
    """

    def __init__(self, journal: Journal, repo, parquet=None, *, retry_seconds: float = 5.0,
                 batch_size: int = 5000, write_timeout: float = 30.0, flush_timeout: float = 1.0) -> None:
        self.journal = journal
        self.repo = repo
        self.parquet = parquet
        if parquet is not None:
            parquet.on_publish = lambda op_ids: journal.stored("pq", op_ids)
        self.retry_seconds = retry_seconds
        self.batch_size = batch_size
        self.write_timeout = write_timeout
        self.flush_timeout = flush_timeout  # Ray's job stop SIGKILLs 3 s after SIGTERM
        self.written = 0  # new rows Postgres took from this sink
        self.rejected: dict[str, str] = {}  # op_id → data error; kept in the journal, retried now and then
        self.reject_retry = 60.0
        self._rejected_at: dict[str, float] = {}
        self.outage_started: float | None = None
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task | None = None

    async def recover(self) -> dict[str, int]:
        """Replay what the journal holds from an earlier run; start the Postgres writer.

        Operations issued but never recorded get a record with the error
        ``SCHEDULER_KILLED``; records Parquet lacks are written there unless a file already
        holds them; everything Postgres lacks is queued (it skips op_ids it has).
        """
        from parsec.store.parquet import partition_of, published_op_ids  # pandas: only a durable sink's start

        ops = self.journal.ops.values()
        killed = [op.intent.killed_record() for op in ops if op.record is None and op.intent is not None]
        self.journal.recorded(killed)
        summary = {"killed": len(killed), "to_parquet": 0, "already_in_parquet": 0}
        if self.parquet is not None and (missing := self.journal.pending("pq")):
            since = min(record.created_at.timestamp() for record in missing) - 60  # a margin for clock steps
            there = published_op_ids(self.parquet.root, {partition_of(r) for r in missing}, since)
            self.journal.stored("pq", [r.op_id for r in missing if r.op_id in there])
            rest = [r for r in missing if r.op_id not in there]
            self.parquet.write(rest)
            self.parquet.flush()
            summary.update(to_parquet=len(rest), already_in_parquet=len(missing) - len(rest))
        summary["to_postgres"] = len(self.journal.pending("pg"))
        self._drainer = asyncio.create_task(self._drain())
        self._wake.set()
        return summary

    def issue(self, intent: Intent) -> None:
        self.journal.issued(intent)

    async def write(self, records: list[MeasurementRecord]) -> None:
        self.journal.recorded(records)
        if self.parquet is not None:
            self.parquet.write(records)
        self._wake.set()

    def spooled(self) -> int:
        """Records Postgres does not hold yet."""
        return len(self.journal.pending("pg"))

    async def flush(self) -> None:
        """Publish Parquet, give Postgres ``flush_timeout`` to take the rest, close the
        journal. What Postgres did not take stays in the journal for the next start."""
        if self.parquet is not None:
            self.parquet.close()
        if self._drainer is not None:
            self._wake.set()
            deadline = time.monotonic() + self.flush_timeout
            while self._unwritten() and time.monotonic() < deadline and not self._drainer.done():
                await asyncio.sleep(0.02)
            self._drainer.cancel()
            (outcome,) = await asyncio.gather(self._drainer, return_exceptions=True)
            if isinstance(outcome, Exception):  # a bug, not an outage: say so (the records stay spooled)
                log.error("the Postgres writer failed: %r", outcome)
        self.left_in_spool = self.spooled()
        if self.left_in_spool:  # the job exits non-zero and says so (parsec.scheduler.job)
            log.warning("%d record(s) not yet in Postgres stay in the spool %s", self.left_in_spool, self.journal.path)
        self.journal.close()

    def _unwritten(self) -> list[MeasurementRecord]:
        """Records Postgres lacks, less those it refused within the last ``reject_retry``."""
        now = time.monotonic()
        return [r for r in self.journal.pending("pg")
                if now - self._rejected_at.get(r.op_id, -math.inf) >= self.reject_retry]

    async def _drain(self) -> None:
        """Write what Postgres lacks, oldest first; on failure wait ``retry_seconds``."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._unwritten()[: self.batch_size]:
                try:
                    self.written += await asyncio.wait_for(self.repo.write_measurements(batch), self.write_timeout)
                except Exception as error:
                    if is_unreachable(error):
                        self._outage(error)
                    else:
                        await self._isolate(batch, error)
                    await asyncio.sleep(self.retry_seconds)
                    continue
                self.journal.stored("pg", [record.op_id for record in batch])
                if self.outage_started is not None:
                    log.warning("Postgres is back after %.0f s: spooled records written",
                                time.monotonic() - self.outage_started)
                    print(f"scheduler: Postgres is back; spooled records written ({self.spooled()} left)", flush=True)
                    self.outage_started = None

    def _outage(self, error: BaseException) -> None:
        if self.outage_started is None:
            self.outage_started = time.monotonic()
            print(f"scheduler: Postgres unreachable ({type(error).__name__}: {error}); records spool to "
                  f"{self.journal.path}, retried every {self.retry_seconds:g}s", flush=True)

    async def _isolate(self, batch: list[MeasurementRecord], error: BaseException) -> None:
        """A data error (not an outage): write the batch one record at a time, so one bad
        record holds back only itself; the bad ones stay in the journal and are tried again
        every ``reject_retry`` seconds (and at the next start)."""
        log.error("Postgres refused a batch of %d records (%s); writing them one by one", len(batch), error)
        for record in batch:
            try:
                self.written += await asyncio.wait_for(self.repo.write_measurements([record]), self.write_timeout)
            except Exception as single:
                if is_unreachable(single):
                    self._outage(single)
                    return
                if record.op_id not in self.rejected:
                    log.error("record %s kept in the spool, not written (retried every %.0f s): %s",
                              record.op_id, self.reject_retry, single)
                self.rejected[record.op_id] = f"{type(single).__name__}: {single}"
                self._rejected_at[record.op_id] = time.monotonic()
            else:
                self.journal.stored("pg", [record.op_id])
                self.rejected.pop(record.op_id, None)
                self._rejected_at.pop(record.op_id, None)
