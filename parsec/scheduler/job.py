"""Run schedulers to completion: the body of ``jobs/scheduler.py`` and ``parsec scheduler``.

``--fleets`` is the Go parsec's flag: every value (repeated, or joined by ',') is a fleet of
the one scheduler loop (``--fleets default --fleets optprov``: one loop over both). One job
may also run several independent loops at once — one per ``--loop`` (``--loop default
--loop optprov --loop default+fullrt``) — the way ProbeLab ran one scheduler per fleet plus
cross-fleet ones. Each loop registers
its own ``schedulers_ecs`` row, keeps its own round-robin and writes its own Parquet files;
they share the process, the database pool and the stop signal.

Connects to Postgres (applying pending migrations), runs rounds and streams every record
to Postgres and the Parquet dataset. ``--rounds`` (per loop) or ``--duration`` bound a
run; SIGTERM/SIGINT (``ray job stop``, Ctrl-C) end it cleanly: no new round starts,
operations in flight get ``PARSEC_SCHEDULER_STOP_GRACE`` (1 s) to finish and are otherwise
recorded as cancelled, and the Parquet files are closed.

Every operation passes through a journal in ``PARSEC_SCHEDULER_SPOOL_DIR`` (one per loop):
written before it is issued and when its record is known, kept until Postgres and Parquet
hold the record. While Postgres is down the records wait there and are retried; a
scheduler started after a crash or a SIGKILL replays it first — records what was in
flight as ``scheduler killed``, writes what the sinks lack — so nothing issued is lost
and nothing is stored twice (``parsec.scheduler.sinks``, ``parsec.store.journal``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import start_http_server

from parsec.config import DatabaseSettings, SchedulerSettings, TelemetrySettings, load
from parsec.scheduler.loop import RoundReport, Scheduler, SchedulerMetrics, register_scheduler
from parsec.scheduler.sinks import DurableSink, journal_path
from parsec.store.db import Repository, StoreError, connect_pool
from parsec.store.journal import Journal, JournalBusy
from parsec.store.migrations import apply_migrations

log = logging.getLogger("parsec.scheduler")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleets", action="append",
                        help="the fleets of the scheduler loop, as the Go parsec's flag: repeat it or join by ',' "
                             "(--fleets default --fleets optprov: one loop over both; env PARSEC_SCHEDULER_FLEETS, "
                             "default 'default')")
    parser.add_argument("--loop", action="append", metavar="FLEETS",
                        help="an independent scheduler loop over these fleets (joined by ',' or '+'); repeat for "
                             "several loops in this job: --loop default --loop optprov --loop default+fullrt")
    parser.add_argument("--interval", help="at most one round start per interval, e.g. 1m, 5s (default 1m)")
    parser.add_argument("--probes", type=int, help="sequential retrievals per node per round (default 1)")
    parser.add_argument("--rounds", type=int, help="stop after this many rounds per loop (default: run until stopped)")
    parser.add_argument("--duration", help="stop starting rounds after this long, e.g. 1h, 30m (default: unbounded)")
    parser.add_argument("--parquet-dir", help="Parquet dataset root (default .parsec/parquet)")
    parser.add_argument("--no-parquet", action="store_true", help="write Postgres only")
    parser.add_argument("--spool-dir", help="where the journal of operations and spooled records lives "
                                            "(default ~/.parsec/spool)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT (default: "
                                                       "PARSEC_TELEMETRY_HOST:PARSEC_TELEMETRY_PORT when set)")


def fleet_sets(fleets: list[str] | None, loops: list[str] | None = None) -> list[str | None]:
    """The loops' comma-separated fleets: every ``--fleets`` value together as one loop (the
    Go parsec's meaning), then each ``--loop`` value as a loop of its own ('+' joins too);
    None means the environment's (PARSEC_SCHEDULER_FLEETS) or the default."""
    sets = [_joined(fleets)] if fleets else []
    sets += [_joined([value]) for value in loops or []]
    return sets or [None]


def _joined(values: list[str]) -> str:
    parts = [part.strip() for value in values for part in value.replace("+", ",").split(",")]
    return ",".join(dict.fromkeys(part for part in parts if part)) or ",".join(values)


def settings_list(args: argparse.Namespace) -> list[SchedulerSettings]:
    """One SchedulerSettings per loop; the same fleet set twice is a mistake, not two loops."""
    loops = []
    for fleets in fleet_sets(args.fleets, getattr(args, "loop", None)):
        settings = load(SchedulerSettings, fleets=fleets, interval=args.interval, probes=args.probes,
                        rounds=args.rounds, duration=getattr(args, "duration", None), parquet_dir=args.parquet_dir,
                        spool_dir=getattr(args, "spool_dir", None))
        if args.no_parquet:
            settings = settings.model_copy(update={"parquet_dir": None})
        loops.append(settings)
    seen = [tuple(sorted(s.fleets)) for s in loops]
    if len(set(seen)) != len(seen):
        raise SystemExit("invalid setting: --loop: the same fleet set is given twice")
    return loops


def print_round(report: RoundReport, label: str = "") -> None:
    prefix = f"{label}round {report.number}"
    if report.skipped:
        print(f"{prefix}: skipped ({report.skipped})", flush=True)
        return
    provide = report.provide
    status = "ok" if provide.error is None else f"error: {provide.error}"
    found = sum(1 for r in report.retrievals if r.error is None)
    print(f"{prefix}: {report.ready} ready; provide by node {provide.node_id} "
          f"{provide.duration:.3f}s ({status}); retrievals {found}/{len(report.retrievals)} found", flush=True)


async def _start_loop(settings: SchedulerSettings, repo, database: DatabaseSettings, metrics_port: int | None,
                      label: str, metrics_host: str = "127.0.0.1") -> Scheduler:
    # the journal's lock first: a second scheduler of the same fleets and database stops
    # here, before it registers a schedulers_ecs row
    journal = Journal(journal_path(settings.spool_dir, settings.fleets, database.redacted()),
                      sinks=("pg", "pq") if settings.parquet_dir is not None else ("pg",),
                      archive=settings.spool_archive)
    journal.open()
    from parsec.store.parquet import ParquetSink  # pandas and pyarrow: not at every `parsec` start

    try:
        scheduler_id = await register_scheduler(repo, settings, {"host": socket.gethostname()})
        writer = None
        if settings.parquet_dir is not None:
            writer = ParquetSink(settings.parquet_dir, rotate_rows=settings.parquet_rotate_rows,
                                 rotate_seconds=settings.parquet_rotate_seconds, writer_id=f"s{scheduler_id}")
        sink = DurableSink(journal, repo, writer, retry_seconds=settings.spool_retry)
        recovered = await sink.recover()
    except BaseException:
        journal.close()
        raise
    if any(recovered.values()):
        print(f"{label}scheduler {scheduler_id}: replayed the spool {journal.path}: {recovered['killed']} operation(s) "
              f"in flight when the previous scheduler died recorded as killed; {recovered['to_postgres']} record(s) "
              f"for Postgres, {recovered['to_parquet']} for Parquet ({recovered['already_in_parquet']} already there)",
              flush=True)
    metrics = SchedulerMetrics()
    scheduler = Scheduler(settings, repo, sink, metrics=metrics, on_round=lambda report: print_round(report, label),
                          scheduler_id=scheduler_id)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)
    return scheduler


@dataclass
class JobOutcome:
    """What a job did: reports per loop, and the records Postgres did not get, per spool."""

    reports: list[list[RoundReport]]
    unwritten: dict[Path, int] = field(default_factory=dict)

    def unwritten_line(self) -> str | None:
        """One line naming how many records Postgres lacks and where they are kept; None if none."""
        if not self.unwritten:
            return None
        total = sum(self.unwritten.values())
        where = ", ".join(str(path) for path in self.unwritten)
        return (f"parsec scheduler: {total} record(s) not written to Postgres, kept in {where}; "
                f"the next scheduler start of the same fleets and database writes them")


async def run_loops(loops: list[SchedulerSettings], database: DatabaseSettings,
                    metrics_port: int | None = None, stop: asyncio.Event | None = None) -> list[list[RoundReport]]:
    """Run every loop at once until each is done (``rounds``) or the run is stopped
    (signal, ``duration``, or ``stop`` set by the caller); reports per loop."""
    return (await run_job(loops, database, metrics_port, stop)).reports


async def run_job(loops: list[SchedulerSettings], database: DatabaseSettings,
                  metrics_port: int | None = None, stop: asyncio.Event | None = None,
                  metrics_host: str = "127.0.0.1") -> JobOutcome:
    """``run_loops``, and what Postgres did not get (kept in each loop's spool). Loop i serves
    its metrics on ``metrics_host:metrics_port + i`` when a port is given."""
    pool = await connect_pool(database, max_size=2 + 2 * len(loops))
    try:
        await apply_migrations(pool)
        repo = Repository(pool)
        schedulers = []
        for index, settings in enumerate(loops):
            label = f"[{'+'.join(settings.fleets)}] " if len(loops) > 1 else ""
            port = metrics_port + index if metrics_port is not None else None
            try:
                scheduler = await _start_loop(settings, repo, database, port, label, metrics_host)
            except BaseException:
                for started in schedulers:  # their journals are open: close them, spooled records kept
                    await started.sink.flush()
                raise
            schedulers.append(scheduler)
            print(f"scheduler {scheduler.scheduler_id}: fleets {','.join(settings.fleets)}, "
                  f"interval {settings.interval:g}s, probes {settings.probes}, rounds {settings.rounds or 'unbounded'}"
                  f"{f', duration {settings.duration:g}s' if settings.duration else ''}; "
                  f"database {database.redacted()}", flush=True)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, _stopping, stop, sig)
            except (NotImplementedError, RuntimeError):
                pass
        duration = loops[0].duration
        if duration:
            loop.call_later(duration, stop.set)
        reports = list(await asyncio.gather(*(scheduler.run(stop) for scheduler in schedulers)))
        unwritten = {scheduler.sink.journal.path: scheduler.sink.left_in_spool for scheduler in schedulers
                     if scheduler.sink.left_in_spool}
        return JobOutcome(reports, unwritten)
    finally:
        await pool.close()


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    print(f"scheduler: {signal.Signals(sig).name} received; finishing in-flight operations", flush=True)
    stop.set()


async def run(settings: SchedulerSettings, database: DatabaseSettings, metrics_port: int | None = None) -> list[RoundReport]:
    """One loop (``parsec scheduler`` with a single fleet set, the demo)."""
    return (await run_loops([settings], database, metrics_port))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parsec scheduler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loops = settings_list(args)
    database = load(DatabaseSettings)
    port, host = metrics_address(args)
    try:
        outcome = asyncio.run(run_job(loops, database, port, metrics_host=host))
    except (StoreError, JournalBusy) as error:
        print(f"parsec scheduler: {error}", file=sys.stderr, flush=True)
        return 1
    return report_outcome(outcome)


def metrics_address(args: argparse.Namespace) -> tuple[int | None, str]:
    """(port, host) of the metrics listener: ``--metrics-port`` on 127.0.0.1, else the Go
    parsec's telemetry settings (``PARSEC_TELEMETRY_PORT``/``_HOST``), else none."""
    if args.metrics_port is not None:
        return args.metrics_port, "127.0.0.1"
    telemetry = load(TelemetrySettings)
    return telemetry.port, telemetry.host


def report_outcome(outcome: JobOutcome) -> int:
    """Print how the job ended; the exit status: 1 when records are left unwritten."""
    print(finished_line(outcome.reports), flush=True)
    line = outcome.unwritten_line()
    if line is not None:
        print(line, file=sys.stderr, flush=True)
        return 1
    return 0


def finished_line(results: list[list[RoundReport]]) -> str:
    if len(results) == 1:
        return f"scheduler finished: {len(results[0])} round(s)"
    return f"schedulers finished: {', '.join(str(len(r)) for r in results)} round(s) in {len(results)} loops"
