"""Repository on a real PostgreSQL: registration, heartbeats, discovery, idempotent writes."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest

from parsec.config import DatabaseSettings
from parsec.store.db import NodeInfo, Repository, StoreError, connect_pool
from parsec.store.migrations import apply_migrations
from parsec.store.records import MeasurementRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@asynccontextmanager
async def open_repo(settings: DatabaseSettings) -> AsyncIterator[Repository]:
    pool = await connect_pool(settings)
    try:
        await apply_migrations(pool)
        yield Repository(pool)
    finally:
        await pool.close()


def run(settings: DatabaseSettings, body: Callable[[Repository], Awaitable[object]]) -> object:
    async def main() -> object:
        async with open_repo(settings) as repo:
            return await body(repo)

    return asyncio.run(main())


def node(fleet: str = "default", *, server_port: int = 7070, peer_port: int = 4001) -> NodeInfo:
    return NodeInfo(cpu=2, memory=4096, peer_id=f"12D3Koo{uuid.uuid4().hex[:8]}", region="local",
                    cmd="parsec server", fleet=fleet, dependencies={"libp2p": "0.8.1"},
                    ip_address="127.0.0.1", server_port=server_port, peer_port=peer_port)


def record(kind: str, scheduler_id: int, node_id: int, *, error: str | None = None,
           seconds: int = 0) -> MeasurementRecord:
    return MeasurementRecord(
        op_id=uuid.uuid4().hex, kind=kind, scheduler_id=scheduler_id, node_id=node_id,
        fleet="default", region="local", round=3, rt_size=42, duration=0.25 + seconds,
        cid="QmTest", error=error, step=kind, created_at=T0 + timedelta(seconds=seconds),
    )


def test_unreachable_database_is_a_readable_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    settings = DatabaseSettings(host="127.0.0.1", port=port, password="s3cret-pw-xyz")
    with pytest.raises(StoreError) as caught:
        asyncio.run(connect_pool(settings, timeout=2))
    assert settings.redacted() in str(caught.value)
    assert "s3cret-pw-xyz" not in str(caught.value)


def test_unknown_database_is_a_readable_error(pg):
    settings = pg.model_copy(update={"name": "parsec_no_such_db"})
    with pytest.raises(StoreError, match="parsec_no_such_db"):
        asyncio.run(connect_pool(settings))


def test_scheduler_and_node_rows(fresh_db):
    async def body(repo: Repository):
        scheduler_id = await repo.insert_scheduler(["default", "fullrt"], {"parsec": "0.1.0"})
        node_id = await repo.insert_node(node(server_port=32767, peer_port=20001))
        await repo.heartbeat(node_id)
        # a row an earlier release wrote with a wrapped port (40000 -> -25536) still reads right
        old = await repo.pool.fetchval("UPDATE nodes_ecs SET server_port = -25536 WHERE id = $1 RETURNING id", node_id)
        scheduler = await repo.pool.fetchrow("SELECT * FROM schedulers_ecs WHERE id = $1", scheduler_id)
        nodes = await repo.discover_nodes(["default"], 60)
        refused = []
        for port in (32768, 40000, 65535, 0):
            with pytest.raises(ValueError, match="SMALLINT"):
                await repo.insert_node(node(server_port=port))
            refused.append(port)
        return scheduler, nodes, old, refused

    scheduler, nodes, node_id, refused = run(fresh_db, body)
    assert scheduler["fleets"] == ["default", "fullrt"]
    assert scheduler["dependencies"] == {"parsec": "0.1.0"}
    assert scheduler["created_at"].tzinfo is not None
    [found] = nodes
    assert (found.id, found.ip_address, found.server_port, found.peer_port) == (node_id, "127.0.0.1", 40000, 20001)
    assert refused == [32768, 40000, 65535, 0]  # never written


def test_discover_filters_fleet_window_offline_and_orders_by_id(fresh_db):
    async def body(repo: Repository):
        ids = {name: await repo.insert_node(node(fleet)) for name, fleet in [
            ("a", "default"), ("b", "fullrt"), ("stale", "default"), ("offline", "default"),
            ("silent", "default"), ("other_fleet", "optprov"), ("c", "default"),
        ]}
        for name in ("c", "a", "b", "stale", "offline", "other_fleet"):  # not in id order
            assert await repo.heartbeat(ids[name])
        await repo.pool.execute(
            "UPDATE nodes_ecs SET last_heartbeat = now() - interval '10 minutes' WHERE id = $1", ids["stale"])
        assert await repo.mark_offline([ids["offline"]]) == 1
        found = await repo.discover_nodes(["default", "fullrt"], 120)
        return ids, [n.id for n in found]

    ids, found = run(fresh_db, body)
    assert found == sorted([ids["a"], ids["b"], ids["c"]])


def test_heartbeat_after_offline_keeps_the_mark(fresh_db):
    async def body(repo: Repository):
        node_id = await repo.insert_node(node())
        assert await repo.heartbeat(node_id)
        assert await repo.mark_offline([node_id]) == 1
        assert await repo.mark_offline([node_id]) == 0  # already offline: untouched
        before = await repo.pool.fetchval("SELECT offline_since FROM nodes_ecs WHERE id = $1", node_id)
        online = await repo.heartbeat(node_id)
        row = await repo.pool.fetchrow("SELECT * FROM nodes_ecs WHERE id = $1", node_id)
        return online, before, row, await repo.discover_nodes(["default"], 120), await repo.heartbeat(10**6)

    online, before, row, discovered, unknown = run(fresh_db, body)
    assert online is False and unknown is False
    assert row["offline_since"] == before
    assert row["last_heartbeat"] >= before
    assert discovered == []


def test_write_measurements_is_idempotent(fresh_db):
    async def body(repo: Repository):
        scheduler_id = await repo.insert_scheduler(["default"], {})
        provider, retriever = await repo.insert_node(node()), await repo.insert_node(node())
        batch = [
            record("provide", scheduler_id, provider),
            record("provide", scheduler_id, provider, error="deadline exceeded", seconds=1),
            record("retrieval", scheduler_id, retriever, seconds=2),
            record("retrieval", scheduler_id, retriever, error="not found", seconds=3),
            record("retrieval", scheduler_id, retriever, error="", seconds=4),
        ]
        first = await repo.write_measurements(batch + batch[:1])  # a duplicate inside the batch too
        second = await repo.write_measurements(batch)
        extra = record("retrieval", scheduler_id, retriever, seconds=5)
        mixed = await repo.write_measurements([extra, *batch[2:]])
        racing = [record("provide", scheduler_id, provider, seconds=6 + i) for i in range(50)]
        raced = await asyncio.gather(*(repo.write_measurements(racing) for _ in range(3)))
        counts = [await repo.count_measurements(kind) for kind in (None, "provide", "retrieval")]
        return (batch, first, second, mixed, sum(raced), counts,
                await repo.fetch_results("provide"), await repo.fetch_results("retrieval"))

    batch, first, second, mixed, raced, counts, provides, retrievals = run(fresh_db, body)
    assert (first, second, mixed, raced) == (5, 0, 1, 50)
    assert counts == [56, 52, 4]
    assert len(provides) == 52 and len(retrievals) == 4
    by_op = {row["op_id"]: row for row in provides + retrievals}
    for sent in batch:
        stored = by_op[sent.op_id]
        assert stored["duration"] == sent.duration
        assert stored["error"] == (sent.error or None)
        assert stored["created_at"] == sent.created_at
        assert (stored["round"], stored["fleet"], stored["rt_size"]) == (3, "default", 42)
    assert all(row["step"] == "provide" for row in provides)
    assert "step" not in retrievals[0]


def test_traces_are_stored_once_beside_their_measurement(fresh_db):
    trace = '{"operation":"provide","rpc_total":40,"hops":2,"peers_contacted":20,"failures":1,"strategy":"classic"}'

    async def body(repo: Repository):
        scheduler_id = await repo.insert_scheduler(["default"], {})
        provider = await repo.insert_node(node())
        with_trace = MeasurementRecord(**{**record("provide", scheduler_id, provider).as_dict(), "trace": trace})
        without = record("provide", scheduler_id, provider, seconds=1)
        await repo.write_measurements([with_trace, without])
        await repo.write_measurements([with_trace])
        rows = await repo.pool.fetch("SELECT op_id, rpc_total, hops, peers_contacted, failures, strategy, detail"
                                     " FROM traces")
        return with_trace, [dict(row) for row in rows]

    sent, rows = run(fresh_db, body)
    assert len(rows) == 1
    row = rows[0]
    assert row["op_id"].hex == sent.op_id
    assert (row["rpc_total"], row["hops"], row["peers_contacted"], row["failures"], row["strategy"]) == (
        40, 2, 20, 1, "classic")
    assert row["detail"]["operation"] == "provide"


def test_path_bound_and_host_lag_go_to_their_columns_and_back(fresh_db):
    """traces.host_lag_ms / path_bound_s from the trace JSON: numbers only (an int too), NULL
    where the key is missing, null or not a number, and the batch is stored either way."""
    traces = {
        "both": '{"rpc_total": 4, "host_lag_ms": 61.5, "path_bound_s": 0.25}',
        "int lag, null bound": '{"rpc_total": 4, "host_lag_ms": 3, "path_bound_s": null}',
        "strings": '{"rpc_total": 4, "host_lag_ms": "61.5", "path_bound_s": "0.25"}',
        "neither": '{"rpc_total": 4}',
        "no trace": None,
    }

    async def body(repo: Repository):
        scheduler_id = await repo.insert_scheduler(["default"], {})
        provider = await repo.insert_node(node())
        sent = {label: MeasurementRecord(**{**record("provide", scheduler_id, provider, seconds=i).as_dict(),
                                            "trace": trace})
                for i, (label, trace) in enumerate(traces.items())}
        stored = await repo.write_measurements(list(sent.values()))
        columns = await repo.pool.fetch("SELECT op_id, host_lag_ms, path_bound_s FROM traces")
        analysis = await repo.fetch_for_analysis("provide")
        return sent, stored, columns, analysis

    sent, stored, columns, analysis = run(fresh_db, body)
    assert stored == 5
    label = {record.op_id: name for name, record in sent.items()}
    by_label = {label[row["op_id"].hex]: (row["host_lag_ms"], row["path_bound_s"]) for row in columns}
    assert by_label == {"both": (61.5, 0.25), "int lag, null bound": (3.0, None), "strings": (None, None),
                        "neither": (None, None)}
    rows = {label[row["op_id"]]: row for row in analysis}
    assert (rows["both"]["trace_host_lag_ms"], rows["both"]["trace_path_bound_s"]) == (61.5, 0.25)
    assert (rows["int lag, null bound"]["trace_host_lag_ms"], rows["int lag, null bound"]["trace_path_bound_s"]) == \
        (3.0, None)
    assert rows["no trace"]["trace_host_lag_ms"] is None and rows["no trace"]["trace"] is None


def test_write_rejects_naive_timestamps(fresh_db):
    naive = record("provide", 1, 1)
    naive = MeasurementRecord(**{**naive.as_dict(), "created_at": naive.created_at.replace(tzinfo=None)})

    async def body(repo: Repository):
        with pytest.raises(ValueError, match="timezone-aware"):
            await repo.write_measurements([naive])

    run(fresh_db, body)


def test_scheduler_operations_are_each_rows_op_id_and_error(fresh_db):
    async def body(repo: Repository):
        mine, other = await repo.insert_scheduler(["default"], {}), await repo.insert_scheduler(["default"], {})
        provider = await repo.insert_node(node())
        batch = [record("provide", mine, provider), record("retrieval", mine, provider, error="not found", seconds=1),
                 record("provide", other, provider, seconds=2)]
        await repo.write_measurements(batch)
        await repo.pool.execute(  # a row a Go scheduler wrote: no measurements entry, so no op_id
            "INSERT INTO retrievals_ecs (scheduler_id, node_id, cid, duration, rt_size, created_at)"
            " VALUES ($1, $2, 'QmGo', 1.5, 20, now())", mine, provider)
        return batch, await repo.scheduler_operations([mine])

    batch, rows = run(fresh_db, body)
    assert sorted(rows, key=lambda row: row["op_id"] or "") == sorted(
        [{"op_id": None, "error": None}, {"op_id": batch[0].op_id, "error": None},
         {"op_id": batch[1].op_id, "error": "not found"}], key=lambda row: row["op_id"] or "")
