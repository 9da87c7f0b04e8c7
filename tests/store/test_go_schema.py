"""One database shared with the Go parsec, in both orders, on a real PostgreSQL.

The Go side is built here as the Go parsec builds it (facts of probe-lab/parsec
pkg/db/migrations 000001…000006 and of golang-migrate's postgres driver, written for this
test): golang-migrate's table ``schema_migrations (version bigint, dirty boolean)``, each
version first recorded dirty, its file run, then recorded clean.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from parsec.store.migrations import (
    GO_SCHEMA_VERSION,
    MigrationError,
    apply_migrations,
    discover,
    golang_migrate_lock_key,
)
from tests.conftest import scratch_database
from tests.store.test_migrations import ALL_TABLES, BOOKKEEPING, GO_TABLES, with_conn

VERSIONS = [migration.version for migration in discover()]
OURS = set(ALL_TABLES) - GO_TABLES

# The Go parsec's migrations, version by version (the columns and constraints they create).
GO_STEPS = {
    1: """CREATE TABLE runs (id INT GENERATED ALWAYS AS IDENTITY, dependencies JSONB NOT NULL,
          started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ CHECK ( finished_at > started_at ),
          updated_at TIMESTAMPTZ NOT NULL CHECK ( updated_at >= created_at ), created_at TIMESTAMPTZ NOT NULL,
          PRIMARY KEY (id));""",
    2: """CREATE TABLE nodes (id INT GENERATED ALWAYS AS IDENTITY, peer_id TEXT NOT NULL, run_id INT NOT NULL,
          region TEXT NOT NULL, instance_type TEXT NOT NULL, dependencies JSONB NOT NULL,
          created_at TIMESTAMPTZ NOT NULL,
          CONSTRAINT fk_nodes_run_id FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE SET NULL,
          PRIMARY KEY (id));""",
    3: """CREATE TABLE retrievals (id INT GENERATED ALWAYS AS IDENTITY, node_id INT NOT NULL, rt_size INT NOT NULL,
          duration FLOAT NOT NULL, cid TEXT NOT NULL, error TEXT, created_at TIMESTAMPTZ NOT NULL,
          CONSTRAINT fk_retrievals_node FOREIGN KEY (node_id) REFERENCES nodes (id), PRIMARY KEY (id));
          CREATE INDEX idx_retrievals_created_at ON retrievals (created_at);""",
    4: """CREATE TABLE provides (id INT GENERATED ALWAYS AS IDENTITY, node_id INT NOT NULL, rt_size INT NOT NULL,
          duration FLOAT NOT NULL, cid TEXT NOT NULL, error TEXT, created_at TIMESTAMPTZ NOT NULL,
          CONSTRAINT fk_provides_node FOREIGN KEY (node_id) REFERENCES nodes (id), PRIMARY KEY (id));
          CREATE INDEX idx_provides_created_at ON provides (created_at);""",
    5: """CREATE TABLE schedulers_ecs (id INT GENERATED ALWAYS AS IDENTITY, fleets TEXT[] NOT NULL,
          dependencies JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (id));
          CREATE TABLE nodes_ecs (id INT GENERATED ALWAYS AS IDENTITY, cpu INT NOT NULL, memory INT NOT NULL,
          peer_id TEXT NOT NULL, region TEXT NOT NULL, cmd TEXT NOT NULL, fleet TEXT NOT NULL,
          dependencies JSONB NOT NULL, ip_address INET NOT NULL, server_port SMALLINT NOT NULL,
          peer_port SMALLINT NOT NULL, last_heartbeat TIMESTAMPTZ, offline_since TIMESTAMPTZ,
          created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (id));
          CREATE TABLE retrievals_ecs (id INT GENERATED ALWAYS AS IDENTITY, scheduler_id INT NOT NULL,
          node_id INT NOT NULL, rt_size INT NOT NULL, duration FLOAT NOT NULL, cid TEXT NOT NULL, error TEXT,
          created_at TIMESTAMPTZ NOT NULL,
          CONSTRAINT fk_retrievals_ecs_node_id FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,
          CONSTRAINT fk_retrievals_ecs_scheduler_id FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id)
              ON DELETE CASCADE,
          PRIMARY KEY (id));
          CREATE TABLE provides_ecs (id INT GENERATED ALWAYS AS IDENTITY, scheduler_id INT NOT NULL,
          node_id INT NOT NULL, rt_size INT NOT NULL, duration FLOAT NOT NULL, cid TEXT NOT NULL, error TEXT,
          created_at TIMESTAMPTZ NOT NULL,
          CONSTRAINT fk_provides_ecs_node_id FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,
          CONSTRAINT fk_provides_ecs_scheduler_id FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id)
              ON DELETE CASCADE,
          PRIMARY KEY (id));
          CREATE INDEX idx_provides_ecs_created_at ON provides_ecs (created_at);
          CREATE INDEX idx_retrievals_ecs_created_at ON retrievals_ecs (created_at);""",
    6: """ALTER TABLE provides_ecs ADD COLUMN step TEXT;
          UPDATE provides_ecs SET step = CASE WHEN n.fleet = 'cid.contact' THEN 'availability' ELSE 'provide' END
          FROM nodes_ecs n WHERE provides_ecs.node_id = n.id;
          ALTER TABLE provides_ecs ALTER COLUMN step SET NOT NULL;""",
}


async def go_migrate(conn: asyncpg.Connection, up_to: int = GO_SCHEMA_VERSION) -> None:
    """What the Go parsec's start does to a database: golang-migrate's Up, step by step."""
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key,"
                       " dirty boolean not null)")
    database = await conn.fetchval("SELECT current_database()")
    key = golang_migrate_lock_key(database)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        current = await conn.fetchval("SELECT version FROM schema_migrations LIMIT 1") or 0
        for version in range(current + 1, up_to + 1):
            for dirty in (True, False):
                async with conn.transaction():
                    await conn.execute("TRUNCATE schema_migrations")
                    await conn.execute("INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)", version, dirty)
                if dirty:
                    async with conn.transaction():
                        await conn.execute(GO_STEPS[version])
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def schema_of(conn: asyncpg.Connection, tables: set[str]) -> dict[str, list[tuple]]:
    """Columns (in order, with type, nullability, identity, default), constraints and indexes."""
    names = sorted(tables)
    columns = await conn.fetch(
        "SELECT table_name, column_name, udt_name, is_nullable, is_identity, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY($1)"
        " ORDER BY table_name, ordinal_position", names)
    constraints = await conn.fetch(
        "SELECT conrelid::regclass::text AS tab, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY($1) ORDER BY 1, 2", names)
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename = ANY($1) ORDER BY 1, 2", names)
    return {"columns": [tuple(r) for r in columns], "constraints": [tuple(r) for r in constraints],
            "indexes": [tuple(r) for r in indexes]}


async def tables_of(conn: asyncpg.Connection) -> set[str]:
    return {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


async def go_rows(conn: asyncpg.Connection) -> list[tuple]:
    return [tuple(r) for r in await conn.fetch("SELECT version, dirty FROM schema_migrations")]


def test_fresh_database_is_what_the_go_parsec_leaves(pg, fresh_db):
    """Ours on an empty database: every Go table, golang-migrate's table and row exactly as a
    Go-migrated database has them, so the Go binary finds nothing to migrate."""
    async def ours(conn):
        await apply_migrations(conn)
        return await schema_of(conn, GO_TABLES | {"schema_migrations"}), await go_rows(conn), await tables_of(conn)

    async def go(conn):
        await go_migrate(conn)
        return await schema_of(conn, GO_TABLES | {"schema_migrations"}), await go_rows(conn)

    our_schema, our_rows, our_tables = with_conn(fresh_db, ours)
    with scratch_database(pg) as other:
        go_schema, go_version = with_conn(other, go)
    assert our_rows == go_version == [(GO_SCHEMA_VERSION, False)]
    for part in ("columns", "constraints", "indexes"):
        assert our_schema[part] == go_schema[part], part
    assert our_tables == GO_TABLES | OURS | BOOKKEEPING


def test_go_migrated_database_gets_only_our_tables(fresh_db):
    """Ours after the Go parsec: its tables, rows and bookkeeping untouched; ours added; a
    second start of either changes nothing."""
    async def body(conn):
        await go_migrate(conn)
        scheduler = await conn.fetchval("INSERT INTO schedulers_ecs (fleets, dependencies, created_at)"
                                        " VALUES ('{go-fleet}', '{}', now()) RETURNING id")
        before = await schema_of(conn, GO_TABLES | {"schema_migrations"})
        applied = await apply_migrations(conn)
        await go_migrate(conn)  # the Go binary starting again
        again = await apply_migrations(conn)
        after = await schema_of(conn, GO_TABLES | {"schema_migrations"})
        kept = await conn.fetchval("SELECT fleets FROM schedulers_ecs WHERE id = $1", scheduler)
        return applied, again, before, after, kept, await go_rows(conn), await tables_of(conn)

    applied, again, before, after, kept, rows, tables = with_conn(fresh_db, body)
    assert applied == VERSIONS and again == []
    assert after == before
    assert kept == ["go-fleet"]
    assert rows == [(GO_SCHEMA_VERSION, False)]
    assert tables == GO_TABLES | OURS | BOOKKEEPING


@pytest.mark.parametrize(("row", "words"), [
    ((GO_SCHEMA_VERSION + 1, False), ["version 7", "newer", "upgrade parsec"]),
    ((GO_SCHEMA_VERSION, True), ["dirty", "version 6"]),
    ((5, False), ["version 5", "migrate it to 6"]),
])
def test_a_go_schema_we_cannot_share_is_one_line(fresh_db, row, words):
    async def body(conn):
        await go_migrate(conn, up_to=min(row[0], GO_SCHEMA_VERSION))
        await conn.execute("UPDATE schema_migrations SET version = $1, dirty = $2", *row)
        with pytest.raises(MigrationError) as caught:
            await apply_migrations(conn)
        return str(caught.value), await tables_of(conn), await go_rows(conn)

    message, tables, rows = with_conn(fresh_db, body)
    assert "\n" not in message
    assert all(word in message for word in words), message
    assert not tables & OURS  # nothing of ours created
    assert rows == [row]  # and golang-migrate's row untouched


def test_bookkeeping_of_earlier_releases_moves_to_our_table(fresh_db):
    """A database our releases before the shared bookkeeping made (our rows in
    schema_migrations, no Go tables of the first design): our rows move, golang-migrate's
    table takes the name, nothing is re-applied and no row is lost."""
    async def body(conn):
        await apply_migrations(conn)
        scheduler = await conn.fetchval("INSERT INTO schedulers_ecs (fleets, dependencies, created_at)"
                                        " VALUES ('{default}', '{}', now()) RETURNING id")
        # turn it into what an earlier release left
        await conn.execute("DROP TABLE schema_migrations, provides, retrievals, nodes, runs")
        await conn.execute("ALTER TABLE parsec_migrations RENAME TO schema_migrations")
        applied = await apply_migrations(conn)
        ours = [tuple(r) for r in await conn.fetch("SELECT version, name FROM parsec_migrations ORDER BY 1")]
        kept = await conn.fetchval("SELECT count(*) FROM schedulers_ecs WHERE id = $1", scheduler)
        return applied, ours, await go_rows(conn), kept, await tables_of(conn)

    applied, ours, rows, kept, tables = with_conn(fresh_db, body)
    assert applied == []
    assert ours == [(m.version, m.name) for m in discover()]
    assert rows == [(GO_SCHEMA_VERSION, False)]
    assert kept == 1
    assert tables == GO_TABLES | OURS | BOOKKEEPING


def test_golang_migrate_lock_key_is_its_rule():
    """Values printed by Go's hash/crc32 with golang-migrate's rule (schema NUL table NUL
    database, times 1486364155, uint32)."""
    assert golang_migrate_lock_key("parsec") == 764166086
    assert golang_migrate_lock_key("postgres") == 143310882


def test_waits_while_a_go_binary_migrates(fresh_db):
    """A Go binary holding golang-migrate's lock (mid-migration) makes us wait, then we see
    its version 6 and add only our tables."""
    async def main():
        go_conn = await asyncpg.connect(fresh_db.dsn())
        our_conn = await asyncpg.connect(fresh_db.dsn())
        try:
            key = golang_migrate_lock_key(await go_conn.fetchval("SELECT current_database()"))
            await go_conn.execute("SELECT pg_advisory_lock($1)", key)
            ours = asyncio.create_task(apply_migrations(our_conn))
            await asyncio.sleep(0.5)
            waited = not ours.done()
            await go_migrate(go_conn)  # the Go binary's migration (advisory locks nest per session)
            await go_conn.execute("SELECT pg_advisory_unlock($1)", key)
            return waited, await asyncio.wait_for(ours, 10), await go_rows(go_conn)
        finally:
            await go_conn.close()
            await our_conn.close()

    waited, applied, rows = asyncio.run(main())
    assert waited
    assert applied == VERSIONS
    assert rows == [(GO_SCHEMA_VERSION, False)]


def test_parsec_migrate_up_and_down_names_the_go_schema(fresh_db, monkeypatch, capsys):
    """The command: ours applied after the Go schema, rolled back without it."""
    from parsec.cli import main

    for field in ("host", "port", "name", "user", "password"):
        monkeypatch.setenv(f"PARSEC_DATABASE_{field.upper()}", str(getattr(fresh_db, field)))
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"applied: {VERSIONS}", "Go parsec schema: golang-migrate version 6"]
    assert main(["migrate", "--down", "0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"rolled back: {VERSIONS[::-1]} (the Go parsec's tables stay: they are shared)",
        "Go parsec schema: golang-migrate version 6"]
    tables = with_conn(fresh_db, tables_of)
    assert tables == GO_TABLES | BOOKKEEPING
