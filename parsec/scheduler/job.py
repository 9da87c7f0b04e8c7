"""Run a scheduler to completion: the body of ``jobs/scheduler.py`` and ``parsec scheduler``.

Connects to Postgres (applying pending migrations), registers a ``schedulers_ecs`` row,
runs rounds and streams every record to Postgres and the Parquet dataset. SIGTERM/SIGINT
(``ray job stop``, Ctrl-C) end it after the current round, with files closed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket

from parsec.config import DatabaseSettings, SchedulerSettings, load
from parsec.scheduler.loop import RoundReport, Scheduler, SchedulerMetrics
from parsec.scheduler.sinks import FanOutSink, ParquetDatasetSink, PostgresSink

log = logging.getLogger("parsec.scheduler")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleets", help="comma-separated fleets (env PARSEC_SCHEDULER_FLEETS, default 'default')")
    parser.add_argument("--interval", help="at most one round start per interval, e.g. 1m, 5s (default 1m)")
    parser.add_argument("--probes", type=int, help="sequential retrievals per node per round (default 1)")
    parser.add_argument("--rounds", type=int, help="stop after this many rounds (default: run until stopped)")
    parser.add_argument("--parquet-dir", help="Parquet dataset root (default .parsec/parquet)")
    parser.add_argument("--no-parquet", action="store_true", help="write Postgres only")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")


def settings_from(args: argparse.Namespace) -> SchedulerSettings:
    settings = load(SchedulerSettings, fleets=args.fleets, interval=args.interval, probes=args.probes,
                    rounds=args.rounds, parquet_dir=args.parquet_dir)
    if args.no_parquet:
        settings = settings.model_copy(update={"parquet_dir": None})
    return settings


def print_round(report: RoundReport) -> None:
    if report.skipped:
        print(f"round {report.number}: skipped ({report.skipped})", flush=True)
        return
    provide = report.provide
    status = "ok" if provide.error is None else f"error: {provide.error}"
    found = sum(1 for r in report.retrievals if r.error is None)
    print(f"round {report.number}: {report.ready} ready; provide by node {provide.node_id} "
          f"{provide.duration:.3f}s ({status}); retrievals {found}/{len(report.retrievals)} found", flush=True)


async def run(settings: SchedulerSettings, database: DatabaseSettings, metrics_port: int | None = None) -> list[RoundReport]:
    from parsec.store.db import Repository, connect_pool
    from parsec.store.migrations import apply_migrations
    from parsec.store.parquet import ParquetSink

    pool = await connect_pool(database)
    try:
        await apply_migrations(pool)
        repo = Repository(pool)
        sinks = [PostgresSink(repo)]
        metrics = SchedulerMetrics()
        scheduler = Scheduler(settings, repo, FanOutSink(), metrics=metrics, on_round=print_round)
        scheduler_id = await scheduler.register({"host": socket.gethostname()})
        if settings.parquet_dir is not None:
            writer = ParquetSink(settings.parquet_dir, rotate_rows=settings.parquet_rotate_rows,
                                 rotate_seconds=settings.parquet_rotate_seconds, writer_id=f"s{scheduler_id}")
            sinks.append(ParquetDatasetSink(writer))
        scheduler.sink = FanOutSink(*sinks)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        print(f"scheduler {scheduler_id}: fleets {','.join(settings.fleets)}, interval {settings.interval:g}s, "
              f"probes {settings.probes}, rounds {settings.rounds or 'unbounded'}; database {database.redacted()}",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        return await scheduler.run(stop)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parsec scheduler", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = settings_from(args)
    database = load(DatabaseSettings)
    reports = asyncio.run(run(settings, database, args.metrics_port))
    print(f"scheduler finished: {len(reports)} round(s)", flush=True)
    return 0
