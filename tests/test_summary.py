"""The demo's closing table: per-fleet counts and quantiles, then p50 speed-ups against
``default`` with a 95 % bootstrap interval and both n."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from parsec.analysis.summary import format_speedups, print_summary
from parsec.store.db import Repository, connect_pool
from parsec.store.migrations import apply_migrations


def test_speedups_name_the_fleet_kind_interval_and_n():
    durations = {"provides": {"default": [10.0, 12.0, 8.0, 10.0], "optprov": [1.0, 1.0, 1.0], "fullrt": []},
                 "retrievals": {"default": [1.0] * 6, "optprov": [2.0] * 6, "fullrt": [0.5] * 6}}
    lines = format_speedups(durations).splitlines()
    assert lines[0].startswith("p50 speed-up against default")
    assert lines[2:] == [
        "optprov    provides    10.00x  95% [8.00, 12.00]  (n=3 vs default n=4)",
        "optprov    retrievals   0.50x  95% [0.50, 0.50]  (n=6 vs default n=6)",
        "fullrt     retrievals   2.00x  95% [2.00, 2.00]  (n=6 vs default n=6)",
    ]  # fullrt without a successful provide has no provide line
    assert format_speedups({"provides": {"optprov": [1.0]}}) == ""  # no baseline: no table


def test_durations_come_from_the_contract_tables_successes_only(fresh_db, capsys):
    async def scenario():
        pool = await connect_pool(fresh_db)
        try:
            await apply_migrations(pool)
            sched = await pool.fetchval("INSERT INTO schedulers_ecs (fleets, dependencies, created_at) "
                                        "VALUES ('{default}', '{}', now()) RETURNING id")
            nodes = {}
            for fleet in ("default", "optprov"):
                nodes[fleet] = await pool.fetchval(
                    "INSERT INTO nodes_ecs (cpu, memory, peer_id, region, cmd, fleet, dependencies, ip_address, "
                    "server_port, peer_port, created_at) VALUES (1, 1, $1, 'local', 'x', $2, '{}', '127.0.0.1', "
                    "7070, 4001, now()) RETURNING id", f"peer-{fleet}", fleet)
            rows = [("default", 4.0, None), ("default", 6.0, None), ("default", 99.0, "context deadline exceeded"),
                    ("optprov", 1.0, None), ("optprov", 2.0, None)]
            for fleet, duration, error in rows:
                await pool.execute(
                    "INSERT INTO provides_ecs (scheduler_id, node_id, cid, duration, rt_size, error, created_at, "
                    "step) VALUES ($1, $2, 'bafy', $3, 20, $4, now(), 'DHT')", sched, nodes[fleet], duration, error)
            old = await pool.fetchval("INSERT INTO provides_ecs (scheduler_id, node_id, cid, duration, rt_size, "
                                      "created_at, step) VALUES ($1, $2, 'bafy', 500, 20, now() - interval '1 day', "
                                      "'DHT') RETURNING created_at", sched, nodes["default"])
            return await Repository(pool).fleet_durations(["default", "optprov"], since=old + timedelta(seconds=1))
        finally:
            await pool.close()

    durations = asyncio.run(scenario())
    assert sorted(durations["provides"]["default"]) == [4.0, 6.0] and sorted(durations["provides"]["optprov"]) == [1.0, 2.0]
    asyncio.run(print_summary(fresh_db, ["default", "optprov"], since=datetime.now(timezone.utc) - timedelta(hours=1)))
    printed = capsys.readouterr().out  # yesterday's run (500 s) is not this run's
    assert "optprov    provides     3.33x  95% [" in printed and "(n=2 vs default n=2)" in printed
    assert "default           3 " in printed  # two successes and one error, this run only
