"""The scheduler loop against a real Postgres and scripted servers: every issued
operation is recorded exactly once, failures as data."""

from __future__ import annotations

import asyncio

from parsec.config import SchedulerSettings
from parsec.scheduler.loop import Scheduler
from parsec.scheduler.sinks import PostgresSink
from parsec.store.db import NodeInfo, Repository, connect_pool
from parsec.store.migrations import apply_migrations
from tests.scheduler.fakeservers import Behaviour, fake_servers


async def _campaign(database, behaviours, rounds=1, fleets=("default",)):
    pool = await connect_pool(database)
    try:
        await apply_migrations(pool)
        repo = Repository(pool)
        async with fake_servers(behaviours) as ports:
            ids = []
            for i, port in enumerate(ports):
                info = NodeInfo(cpu=1, memory=1024, peer_id=f"peer{i}", region="local", cmd="test", fleet="default",
                                dependencies={}, ip_address="127.0.0.1", server_port=port, peer_port=4001)
                ids.append(await repo.insert_node(info))
                await repo.heartbeat(ids[-1])
            settings = SchedulerSettings(fleets=list(fleets), rounds=rounds, interval=0, http_timeout=5,
                                         readiness_timeout=2, parquet_dir=None)
            scheduler = Scheduler(settings, repo, PostgresSink(repo))
            reports = await scheduler.run()
        provides = await repo.fetch_results("provide")
        retrievals = await repo.fetch_results("retrieval")
        offline = [r["id"] for r in await pool.fetch("SELECT id FROM nodes_ecs WHERE offline_since IS NOT NULL")]
        return ids, reports, provides, retrievals, offline, scheduler
    finally:
        await pool.close()


def test_rounds_rotate_providers_and_record_every_retrieval(fresh_db):
    ids, reports, provides, retrievals, offline, scheduler = asyncio.run(
        _campaign(fresh_db, [Behaviour(), Behaviour(), Behaviour(retrieve_error="not found")], rounds=3))
    assert [row["node_id"] for row in provides] == ids
    assert len(retrievals) == 6
    assert sum(row["error"] == "not found" for row in retrievals) == 2
    assert all(row["scheduler_id"] == scheduler.scheduler_id for row in provides + retrievals)
    assert {row["step"] for row in provides} == {"provide"}
    assert offline == []
    assert scheduler.metrics.registry.get_sample_value("parsec_issued_retrievals", {"success": "false"}) == 2


def test_unready_node_is_marked_offline_and_left_out(fresh_db):
    ids, reports, provides, retrievals, offline, _ = asyncio.run(
        _campaign(fresh_db, [Behaviour(), Behaviour(ready=False), Behaviour()]))
    assert offline == [ids[1]]
    assert reports[0].ready == 2
    assert [r["node_id"] for r in retrievals] == [ids[2]]


def test_round_skipped_with_fewer_than_two_ready(fresh_db):
    _, reports, provides, retrievals, _, _ = asyncio.run(
        _campaign(fresh_db, [Behaviour(), Behaviour(ready=False)]))
    assert reports[0].skipped and provides == [] and retrievals == []


def test_failed_provide_is_data_and_skips_retrievals(fresh_db):
    _, _, provides, retrievals, _, _ = asyncio.run(
        _campaign(fresh_db, [Behaviour(provide_error="all ADD_PROVIDERs failed"), Behaviour()]))
    assert [row["error"] for row in provides] == ["all ADD_PROVIDERs failed"]
    assert retrievals == []


def test_http_error_from_provider_is_recorded_with_its_status(fresh_db):
    _, _, provides, retrievals, _, _ = asyncio.run(_campaign(fresh_db, [Behaviour(provide_status=500), Behaviour()]))
    assert len(provides) == 1 and provides[0]["error"].startswith("HTTP 500") and retrievals == []


def test_other_fleets_are_not_scheduled(fresh_db):
    _, reports, provides, _, _, _ = asyncio.run(
        _campaign(fresh_db, [Behaviour(), Behaviour()], fleets=("optprov",)))
    assert reports[0].skipped and provides == []


class _DatabaseGoesAway:
    """The real repository, until ``down``: then discovery and offline marks fail as an
    unreachable Postgres makes them fail."""

    def __init__(self, repo) -> None:
        self.repo = repo
        self.down = False

    def __getattr__(self, name):
        return getattr(self.repo, name)

    async def discover_nodes(self, *args):
        if self.down:
            raise ConnectionRefusedError(111, "Connect call failed")
        return await self.repo.discover_nodes(*args)

    async def mark_offline(self, ids):
        if self.down:
            raise ConnectionRefusedError(111, "Connect call failed")
        return await self.repo.mark_offline(ids)


def test_rounds_go_on_with_the_last_discovery_while_the_database_is_unreachable(fresh_db):
    from parsec.scheduler.sinks import Sink

    class Collect(Sink):
        def __init__(self):
            self.records = []

        async def write(self, records):
            self.records += records

    async def run():
        pool = await connect_pool(fresh_db)
        try:
            await apply_migrations(pool)
            repo = _DatabaseGoesAway(Repository(pool))
            behaviours = [Behaviour(), Behaviour(), Behaviour()]
            async with fake_servers(behaviours) as ports:
                for i, port in enumerate(ports):
                    node = await repo.insert_node(NodeInfo(
                        cpu=1, memory=1024, peer_id=f"p{i}", region="local", cmd="test", fleet="default",
                        dependencies={}, ip_address="127.0.0.1", server_port=port, peer_port=4001))
                    await repo.heartbeat(node)
                sink = Collect()
                settings = SchedulerSettings(fleets=["default"], rounds=1, interval=0, http_timeout=5,
                                             readiness_timeout=2, parquet_dir=None)
                scheduler = Scheduler(settings, repo, sink)
                first = await scheduler.run()
                repo.down = True
                behaviours[2].ready = False  # its offline mark cannot be written now: no matter
                scheduler.settings = settings.model_copy(update={"rounds": 2})
                later = await scheduler.run()
            return first, later, sink.records
        finally:
            await pool.close()

    first, later, records = asyncio.run(run())
    assert first[0].ready == 3 and not first[0].skipped
    assert [r.ready for r in later] == [2, 2] and not any(r.skipped for r in later)
    assert len(records) == 3 + 2 * 2  # every round measured: 1 provide + 2, then 1 + 1 retrievals
