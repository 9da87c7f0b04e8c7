"""Migrations on a real PostgreSQL: idempotent, safe when raced, reversible, the four
original tables exactly as interface.md ("Database") describes them, and one database shared
with the Go parsec in both orders (tests/store/test_go_schema.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from parsec.config import DatabaseSettings
from parsec.store.migrations import MigrationError, apply_migrations, discover, migrate_down

T = TypeVar("T")

# interface.md, "Database": (column, type, nullable) in table order; provides_ecs.step last,
# where the Go parsec's migration 000006 added it.
_RESULT_COLUMNS = [
    ("id", "int4", False), ("scheduler_id", "int4", False), ("node_id", "int4", False),
    ("rt_size", "int4", False), ("duration", "float8", False), ("cid", "text", False),
    ("error", "text", True), ("created_at", "timestamptz", False), ("step", "text", False),
]
EXPECTED_COLUMNS = {
    "schedulers_ecs": [
        ("id", "int4", False), ("fleets", "_text", False), ("dependencies", "jsonb", False),
        ("created_at", "timestamptz", False),
    ],
    "nodes_ecs": [
        ("id", "int4", False), ("cpu", "int4", False), ("memory", "int4", False),
        ("peer_id", "text", False), ("region", "text", False), ("cmd", "text", False),
        ("fleet", "text", False), ("dependencies", "jsonb", False), ("ip_address", "inet", False),
        ("server_port", "int2", False), ("peer_port", "int2", False),
        ("last_heartbeat", "timestamptz", True), ("offline_since", "timestamptz", True),
        ("created_at", "timestamptz", False),
    ],
    "provides_ecs": _RESULT_COLUMNS,
    "retrievals_ecs": [column for column in _RESULT_COLUMNS if column[0] != "step"],
}
GO_TABLES = {*EXPECTED_COLUMNS, "runs", "nodes", "provides", "retrievals"}  # the Go parsec's, at version 6
ALL_TABLES = [*EXPECTED_COLUMNS, "measurements", "traces"]
BOOKKEEPING = {"schema_migrations", "parsec_migrations"}  # golang-migrate's, ours
VERSIONS = [migration.version for migration in discover()]


def with_conn(settings: DatabaseSettings, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        conn = await asyncpg.connect(settings.dsn())
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


async def existing_tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def test_second_apply_is_a_no_op(fresh_db):
    async def body(conn):
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        rows = await conn.fetch("SELECT version, name FROM parsec_migrations")
        go_rows = await conn.fetch("SELECT version, dirty FROM schema_migrations")
        return first, second, [tuple(row) for row in rows], [tuple(row) for row in go_rows]

    first, second, rows, go_rows = with_conn(fresh_db, body)
    assert first == VERSIONS
    assert second == []
    assert rows == [(m.version, m.name) for m in discover()]
    assert go_rows == [(6, False)]


def test_concurrent_apply_from_four_connections(fresh_db):
    async def main():
        conns = [await asyncpg.connect(fresh_db.dsn()) for _ in range(4)]
        try:
            results = await asyncio.gather(*(apply_migrations(conn) for conn in conns))
            count = await conns[0].fetchval("SELECT count(*) FROM parsec_migrations")
            return sorted(results), count
        finally:
            await asyncio.gather(*(conn.close() for conn in conns))

    results, count = asyncio.run(main())
    assert results == [[], [], [], VERSIONS]
    assert count == len(VERSIONS)


def test_down_then_up(fresh_db):
    async def body(conn):
        await apply_migrations(conn)
        reverted = await migrate_down(conn, 0)
        after_down = await existing_tables(conn)
        reapplied = await apply_migrations(conn)
        return reverted, after_down, reapplied, await existing_tables(conn)

    reverted, after_down, reapplied, after_up = with_conn(fresh_db, body)
    assert sorted(reverted) == VERSIONS
    assert after_down == BOOKKEEPING | GO_TABLES  # the Go parsec's tables are shared: they stay
    assert reapplied == VERSIONS
    assert after_up == BOOKKEEPING | GO_TABLES | set(ALL_TABLES)


def test_tables_match_the_interface(fresh_db):
    async def body(conn):
        await apply_migrations(conn)
        columns = await conn.fetch(
            "SELECT table_name, column_name, udt_name, is_nullable = 'YES' AS nullable,"
            " is_identity = 'YES' AS identity FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
        keys = await conn.fetch(
            "SELECT conrelid::regclass::text AS tab, contype::text, pg_get_constraintdef(oid) AS def"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
        )
        indexes = await conn.fetch("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        return columns, keys, indexes

    columns, keys, indexes = with_conn(fresh_db, body)
    for table, expected in EXPECTED_COLUMNS.items():
        actual = [(r["column_name"], r["udt_name"], r["nullable"]) for r in columns if r["table_name"] == table]
        assert actual == expected, table
        identity = [r["column_name"] for r in columns if r["table_name"] == table and r["identity"]]
        assert identity == ["id"], table
        assert (table, "p", "PRIMARY KEY (id)") in {(k["tab"], k["contype"], k["def"]) for k in keys}
    foreign = {(k["tab"], k["def"]) for k in keys if k["contype"] == "f"}
    for table in ("provides_ecs", "retrievals_ecs"):
        assert (table, "FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs(id) ON DELETE CASCADE") in foreign
        assert (table, "FOREIGN KEY (node_id) REFERENCES nodes_ecs(id) ON DELETE CASCADE") in foreign
        assert any(i["tablename"] == table and i["indexdef"].endswith("(created_at)") for i in indexes)


TRACE_COLUMNS_V2 = [
    ("op_id", "uuid", False), ("rpc_total", "int4", True), ("hops", "int4", True), ("peers_contacted", "int4", True),
    ("failures", "int4", True), ("strategy", "text", True), ("detail", "jsonb", False),
]
TRACE_COLUMNS_V3 = [*TRACE_COLUMNS_V2, ("host_lag_ms", "float8", True), ("path_bound_s", "float8", True)]


async def _columns(conn, table: str) -> list[tuple]:
    rows = await conn.fetch(
        "SELECT column_name, udt_name, is_nullable = 'YES' AS nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position", table)
    return [tuple(row) for row in rows]


def test_trace_bounds_migration_up_and_down(fresh_db):
    """0003 adds two nullable float columns to traces only (filled from the JSON of rows already
    there: numbers only), and its down file removes them and nothing else."""
    async def body(conn):
        await apply_migrations(conn)
        before = {table: await _columns(conn, table) for table in ALL_TABLES if table != "traces"}
        traces_v3 = await _columns(conn, "traces")
        reverted = await migrate_down(conn, 2)
        traces_v2 = await _columns(conn, "traces")
        # rows written while the schema was at version 2 (an older scheduler)
        scheduler = await conn.fetchval("INSERT INTO schedulers_ecs (fleets, dependencies, created_at)"
                                        " VALUES ('{default}', '{}', now()) RETURNING id")
        node = await conn.fetchval(
            "INSERT INTO nodes_ecs (cpu, memory, peer_id, region, cmd, fleet, dependencies, ip_address,"
            " server_port, peer_port, created_at) VALUES (1, 1, 'p', 'local', 'c', 'default', '{}', '127.0.0.1',"
            " 1, 2, now()) RETURNING id")
        details = ['{"host_lag_ms": 75.5, "path_bound_s": 1.25, "hops": 3}', '{"host_lag_ms": "x", "path_bound_s": null}',
                   '{"hops": 2}']
        for row_id, detail in enumerate(details, start=1):
            op_id = await conn.fetchval(
                "INSERT INTO measurements (op_id, kind, row_id, scheduler_id, node_id, fleet, region, round, created_at)"
                " VALUES ($1, 'provide', $2, $3, $4, 'default', 'local', 1, now()) RETURNING op_id",
                uuid.uuid4(), row_id, scheduler, node)
            await conn.execute("INSERT INTO traces (op_id, hops, detail) VALUES ($1, 3, $2::jsonb)", op_id, detail)
        reapplied = await apply_migrations(conn)
        filled = await conn.fetch("SELECT host_lag_ms, path_bound_s, hops FROM traces ORDER BY detail::text")
        after = {table: await _columns(conn, table) for table in ALL_TABLES if table != "traces"}
        await migrate_down(conn, 2)
        kept = await conn.fetchval("SELECT count(*) FROM traces")
        return before, traces_v3, reverted, traces_v2, reapplied, [tuple(r) for r in filled], after, kept

    before, traces_v3, reverted, traces_v2, reapplied, filled, after, kept = with_conn(fresh_db, body)
    assert 3 in VERSIONS and reverted == [v for v in VERSIONS if v > 2][::-1]
    assert traces_v3 == TRACE_COLUMNS_V3 and traces_v2 == TRACE_COLUMNS_V2
    assert reapplied == [v for v in VERSIONS if v > 2]
    assert sorted(filled, key=str) == sorted([(75.5, 1.25, 3), (None, None, 3), (None, None, 3)], key=str)
    assert after == before  # every other table as it was
    for table, expected in EXPECTED_COLUMNS.items():
        assert before[table] == expected, table
    assert kept == 3  # reverting keeps the rows (the values stay in detail)


def test_failing_file_is_named_and_rolled_back(fresh_db, tmp_path: Path):
    (tmp_path / "0001_good.up.sql").write_text("CREATE TABLE good (x int);\n")
    (tmp_path / "0002_broken.up.sql").write_text("CREATE TABLE half (x int);\nSELEC 1;\n")

    async def body(conn):
        with pytest.raises(MigrationError) as caught:
            await apply_migrations(conn, tmp_path)
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM parsec_migrations")]
        return str(caught.value), versions, await existing_tables(conn)

    message, versions, tables = with_conn(fresh_db, body)
    assert "0002_broken.up.sql" in message and "line 2" in message
    assert versions == [1]
    assert "good" in tables and "half" not in tables


def test_misnamed_or_missing_files_are_errors(tmp_path: Path):
    (tmp_path / "initial.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="initial.sql"):
        discover(tmp_path)
    with pytest.raises(MigrationError, match="not found"):
        discover(tmp_path / "absent")


def test_revert_without_down_file_is_an_error(fresh_db, tmp_path: Path):
    (tmp_path / "0001_only_up.up.sql").write_text("CREATE TABLE t (x int);")

    async def body(conn):
        await apply_migrations(conn, tmp_path)
        with pytest.raises(MigrationError, match="0001_"):
            await migrate_down(conn, 0, tmp_path)

    with_conn(fresh_db, body)
