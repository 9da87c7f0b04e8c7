"""Scheduler jobs with several loops, bounded runs and a clean stop, against a real
Postgres and scripted servers: each loop has its own schedulers_ecs row and round-robin;
an operation in flight when the job stops is recorded as cancelled, never lost."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import pytest

from parsec.config import SchedulerSettings
from parsec.scheduler import job
from parsec.scheduler.loop import CANCELLED
from parsec.store.db import NodeInfo, Repository, connect_pool
from parsec.store.migrations import apply_migrations
from tests.scheduler.fakeservers import Behaviour, fake_servers


def _args(**given) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    argv = []
    for name, value in given.items():
        for item in value if isinstance(value, list) else [value]:
            argv += [f"--{name.replace('_', '-')}", str(item)]
    return parser.parse_args(argv)


def test_fleets_flags_are_one_loop_as_in_the_go_parsec_and_each_loop_flag_another(monkeypatch):
    monkeypatch.delenv("PARSEC_SCHEDULER_FLEETS", raising=False)
    go_style = job.settings_list(_args(fleets=["default", "optprov,fullrt"], duration="30m"))
    assert [s.fleets for s in go_style] == [["default", "optprov", "fullrt"]]
    loops = job.settings_list(_args(loop=["default", "optprov", "default+fullrt"], duration="30m"))
    assert [s.fleets for s in loops] == [["default"], ["optprov"], ["default", "fullrt"]]
    assert all(s.duration == 1800 for s in loops)
    both = job.settings_list(_args(fleets=["a-label"], loop=["default"]))
    assert [s.fleets for s in both] == [["a-label"], ["default"]]  # fleet labels are free text
    assert job.settings_list(_args())[0].fleets == ["default"]
    with pytest.raises(SystemExit, match="twice"):
        job.settings_list(_args(loop=["default,fullrt", "fullrt+default"]))


async def _register(repo, ports, fleets):
    ids = []
    for i, (port, fleet) in enumerate(zip(ports, fleets)):
        ids.append(await repo.insert_node(NodeInfo(
            cpu=1, memory=1024, peer_id=f"peer{i}", region="local", cmd="test", fleet=fleet, dependencies={},
            ip_address="127.0.0.1", server_port=port, peer_port=4001)))
        await repo.heartbeat(ids[-1])
    return ids


@dataclass
class Outcome:
    ids: list[int]  # nodes_ecs ids, in the order of the behaviours
    result: object  # what the body returned
    rows: dict[str, list[dict]]  # provide / retrieval rows
    schedulers: list[dict]


async def _with_nodes(database, behaviours, fleets, body, *, read_back: bool = True) -> Outcome:
    """Register a scripted server per behaviour (in the given fleets), run ``body``, read back."""
    pool = await connect_pool(database)
    try:
        await apply_migrations(pool)
        repo = Repository(pool)
        async with fake_servers(behaviours) as ports:
            ids = await _register(repo, ports, fleets)
            result = await body()
        rows = {kind: await repo.fetch_results(kind) for kind in ("provide", "retrieval")} if read_back else {}
        schedulers = [dict(r) for r in await pool.fetch("SELECT id, fleets FROM schedulers_ecs ORDER BY id")]
        return Outcome(ids, result, rows, schedulers)
    finally:
        await pool.close()


def test_loops_run_side_by_side_with_their_own_scheduler_rows(fresh_db):
    loops = [SchedulerSettings(fleets=fleets, rounds=2, interval=0, http_timeout=5, readiness_timeout=2,
                               parquet_dir=None) for fleets in (["default"], ["optprov"], ["default", "optprov"])]
    behaviours = [Behaviour() for _ in range(4)]
    outcome = asyncio.run(_with_nodes(fresh_db, behaviours, ["default", "default", "optprov", "optprov"],
                                      lambda: job.run_loops(loops, fresh_db)))
    ids, results, rows, schedulers = outcome.ids, outcome.result, outcome.rows, outcome.schedulers
    assert [len(reports) for reports in results] == [2, 2, 2]
    assert [s["fleets"] for s in schedulers] == [["default"], ["optprov"], ["default", "optprov"]]
    by_scheduler = {s["id"]: [r for r in rows["provide"] if r["scheduler_id"] == s["id"]] for s in schedulers}
    default_id, optprov_id, cross_id = (s["id"] for s in schedulers)
    assert {r["node_id"] for r in by_scheduler[default_id]} == set(ids[:2])
    assert {r["node_id"] for r in by_scheduler[optprov_id]} == set(ids[2:])
    assert [r["node_id"] for r in by_scheduler[cross_id]] == ids[:2]  # round-robin over all four, by id
    cross_retrievals = [r for r in rows["retrieval"] if r["scheduler_id"] == cross_id]
    assert len(cross_retrievals) == 2 * 3  # every other ready node of both fleets
    assert len(rows["retrieval"]) == 2 * 1 + 2 * 1 + 2 * 3


def test_duration_bounds_an_unbounded_run(fresh_db):
    loops = [SchedulerSettings(fleets=["default"], interval=0.2, duration=1.0, http_timeout=5, parquet_dir=None)]
    started = time.monotonic()
    results = asyncio.run(_with_nodes(fresh_db, [Behaviour(), Behaviour()], ["default"] * 2,
                                      lambda: job.run_loops(loops, fresh_db))).result
    assert 0.9 < time.monotonic() - started < 4
    assert 2 <= len(results[0]) <= 6


def test_stop_records_operations_in_flight_as_cancelled(fresh_db):
    """Retrievals that hang past the grace period are cancelled and recorded, and the
    run ends within Ray's 3 s between SIGTERM and SIGKILL."""
    settings = SchedulerSettings(fleets=["default"], interval=0, http_timeout=60, stop_grace=0.5, parquet_dir=None)
    behaviours = [Behaviour(retrieve_delay=30), Behaviour(retrieve_delay=30), Behaviour()]

    async def stopped_mid_round():
        stop = asyncio.Event()
        task = asyncio.create_task(job.run_loops([settings], fresh_db, stop=stop))
        while not any("/retrieve/" in call for b in behaviours for call in b.calls):
            await asyncio.sleep(0.05)
        stopped_at = time.monotonic()
        stop.set()
        results = await task
        return results, time.monotonic() - stopped_at

    outcome = asyncio.run(_with_nodes(fresh_db, behaviours, ["default"] * 3, stopped_mid_round))
    (results, took), rows = outcome.result, outcome.rows
    assert took < 2.5
    assert len(results[0]) == 1 and len(rows["provide"]) == 1 and rows["provide"][0]["error"] is None
    provider = rows["provide"][0]["node_id"]
    assert len(rows["retrieval"]) == 2 and provider not in {r["node_id"] for r in rows["retrieval"]}
    slow = [r for r in rows["retrieval"] if r["error"] == CANCELLED]
    answered = [r for r in rows["retrieval"] if r["error"] is None]
    # the first node provides; the second (slow) and the third (fast) retrieve
    assert len(slow) == 1 and len(answered) == 1
    assert 0.4 < slow[0]["duration"] < 2.0


def test_records_postgres_does_not_take_make_the_job_fail_loudly(fresh_db, tmp_path, capsys):
    """A database that refuses the records (here: `measurements` is gone, as on a Go-only
    database whose migration was undone): the job keeps them in its spool, exits 1 and says
    in one line how many and where."""
    import asyncpg

    settings = SchedulerSettings(fleets=["default"], rounds=1, interval=0, http_timeout=5, readiness_timeout=2,
                                 parquet_dir=None, spool_dir=tmp_path / "spool", spool_retry=0.2)

    async def without_measurements():
        conn = await asyncpg.connect(fresh_db.dsn())
        try:
            await conn.execute("DROP TABLE measurements CASCADE")
        finally:
            await conn.close()
        return await job.run_job([settings], fresh_db)

    outcome = asyncio.run(_with_nodes(fresh_db, [Behaviour(), Behaviour()], ["default"] * 2,
                                      without_measurements, read_back=False)).result
    [(spool, count)] = outcome.unwritten.items()
    assert count == 2  # the provide and the retrieval of the round
    assert spool.parent == tmp_path / "spool" and spool.exists()
    assert job.report_outcome(outcome) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if "Postgres" in line]  # one line
    assert line.startswith("parsec scheduler: 2 record(s) not written to Postgres") and str(spool) in line
    clean = job.JobOutcome(outcome.reports)
    assert job.report_outcome(clean) == 0 and "Postgres" not in capsys.readouterr().err


def test_every_measurement_of_a_multi_step_reply_is_stored(fresh_db):
    """A server answering like the Go IPNI server (two steps per provide): both rows stored,
    with their steps; a failed step stops the round as in the original."""
    settings = SchedulerSettings(fleets=["default"], rounds=2, interval=0, http_timeout=5, readiness_timeout=2,
                                 parquet_dir=None)
    steps = [("provide", ""), ("availability", "")]
    behaviours = [Behaviour(provide_steps=steps), Behaviour(provide_steps=[("provide", ""), ("availability", "gone")])]
    outcome = asyncio.run(_with_nodes(fresh_db, behaviours, ["default"] * 2,
                                      lambda: job.run_loops([settings], fresh_db)))
    provides = outcome.rows["provide"]
    assert sorted((r["node_id"], r["step"], r["error"]) for r in provides) == sorted([
        (outcome.ids[0], "provide", None), (outcome.ids[0], "availability", None),
        (outcome.ids[1], "provide", None), (outcome.ids[1], "availability", "gone")])
    assert [r["node_id"] for r in outcome.rows["retrieval"]] == [outcome.ids[1]]  # only after the clean round
