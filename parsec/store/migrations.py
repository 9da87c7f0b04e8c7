"""Schema migrations on a database shared with the Go parsec.

Two bookkeepings live side by side, as the two programs expect them:

- **The Go parsec's tables** (``schedulers_ecs``, ``nodes_ecs``, ``provides_ecs``,
  ``retrievals_ecs`` and the four older ones it keeps) are golang-migrate's: its table
  ``schema_migrations (version bigint, dirty boolean)`` holds one row, ``(6, false)`` for the
  schema we know (``GO_SCHEMA_VERSION``). On a database without that row we create the Go
  schema from ``migrations/go/schema_v6.sql`` and write the row in the same transaction, so
  a Go binary started later finds nothing to do; on a database the Go parsec migrated we
  leave its tables alone. A newer version, a lower one or a dirty row is one clear error.
- **Our tables** (``measurements``, ``traces``, …) are numbered ``NNNN_name.up.sql`` /
  ``.down.sql`` files in ``migrations/``, applied once, in order, and recorded in
  ``parsec_migrations``. ``migrate_down`` reverts only these: the Go tables are shared.

A database our earlier releases created kept our rows in ``schema_migrations`` (columns
``version, name, applied_at``, which golang-migrate cannot read): they move to
``parsec_migrations`` and golang-migrate's table takes their place, in one transaction.

Servers and schedulers of both languages migrate at start, often at the same moment. We
hold our own advisory lock and golang-migrate's (the key it derives from the database,
schema and table name), so a Go binary waits for us and we wait for it. Each file runs in
its own transaction together with its bookkeeping row, so a failing file leaves nothing
half-applied and the error names it.

The files live in the repository's ``migrations/`` directory (found relative to this package)
or wherever ``PARSEC_MIGRATIONS_DIR`` or the ``directory`` argument (ours only) points; the
Go schema in the ``go/`` subdirectory of the former.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from parsec.store.db import StoreError

log = logging.getLogger(__name__)

LOCK_KEY = 0x7061727365630001  # "parsec" + 1: one lock per database, shared by every process
GO_SCHEMA_VERSION = 6  # probe-lab/parsec pkg/db/migrations: 000001 … 000006
GO_SCHEMA_FILE = Path("go") / f"schema_v{GO_SCHEMA_VERSION}.sql"
GO_TABLE = "schema_migrations"  # golang-migrate's default table name
OWN_TABLE = "parsec_migrations"
_GOLANG_MIGRATE_SALT = 1486364155  # golang-migrate database.GenerateAdvisoryLockId
_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>\w+)\.(?P<direction>up|down)\.sql$")
_CREATE_TRACKING = f"""
CREATE TABLE IF NOT EXISTS {OWN_TABLE} (
    version    INT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
# golang-migrate's postgres driver creates exactly this (ensureVersionTable).
_CREATE_GO_TRACKING = f"CREATE TABLE IF NOT EXISTS {GO_TABLE} (version bigint not null primary key, dirty boolean not null)"


def golang_migrate_lock_key(database: str, schema: str = "public", table: str = GO_TABLE) -> int:
    """The advisory lock golang-migrate's postgres driver takes for ``schema.table`` in ``database``.

    Its rule: CRC-32 (IEEE) of ``schema NUL table NUL database``, times a fixed salt, as a
    32-bit unsigned integer.
    """
    checksum = zlib.crc32("\x00".join((schema, table, database)).encode())
    return (checksum * _GOLANG_MIGRATE_SALT) % (1 << 32)


class MigrationError(StoreError):
    """A migration file is missing, misnamed or failed; the message names the file."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: Path
    down: Path | None


def default_migrations_dir() -> Path:
    """``$PARSEC_MIGRATIONS_DIR``, else the repository's ``migrations/`` beside ``parsec/``."""
    override = os.environ.get("PARSEC_MIGRATIONS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations in a directory, by version; misnamed or duplicate files are errors."""
    directory = Path(directory) if directory is not None else default_migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: not a migration file name (want NNNN_name.up.sql)")
        version = int(match["version"])
        if names.setdefault(version, match["name"]) != match["name"]:
            raise MigrationError(f"{path}: version {version} is used by two names")
        found.setdefault(version, {})[match["direction"]] = path
    migrations = []
    for version in sorted(found):
        files = found[version]
        if "up" not in files:
            raise MigrationError(f"{files['down']}: has no matching .up.sql file")
        migrations.append(Migration(version, names[version], files["up"], files.get("down")))
    return migrations


@asynccontextmanager
async def _locked(db: asyncpg.Connection | asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding our migration lock and golang-migrate's, our tracking table in place."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, _locked(conn) as locked:
            yield locked
        return
    database, schema = await db.fetchrow("SELECT current_database(), current_schema()")
    go_key = golang_migrate_lock_key(database, schema)
    await db.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await db.execute("SELECT pg_advisory_lock($1)", go_key)
        try:
            await db.execute(_CREATE_TRACKING)
            yield db
        finally:
            if not db.is_closed():
                await db.execute("SELECT pg_advisory_unlock($1)", go_key)
    finally:
        if not db.is_closed():  # a lost connection has released the lock already
            await db.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _applied(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(f"SELECT version FROM {OWN_TABLE} ORDER BY version")
    return [row["version"] for row in rows]


async def applied_versions(db: asyncpg.Connection | asyncpg.Pool) -> list[int]:
    """Versions of our migrations recorded in parsec_migrations, ascending."""
    async with _locked(db) as conn:
        return await _applied(conn)


async def go_schema_version(db: asyncpg.Connection | asyncpg.Pool) -> tuple[int, bool] | None:
    """golang-migrate's (version, dirty), or None when it has no row (or no table)."""
    async with _locked(db) as conn:
        if await _tracking_columns(conn) != {"version", "dirty"}:
            return None
        row = await conn.fetchrow(f"SELECT version, dirty FROM {GO_TABLE} LIMIT 1")
        return None if row is None else (row["version"], row["dirty"])


async def _tracking_columns(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1", GO_TABLE,
    )
    return {row["column_name"] for row in rows}


async def _ensure_go_schema(conn: asyncpg.Connection) -> bool:
    """The Go parsec's tables at ``GO_SCHEMA_VERSION``; True when we created them.

    Raises ``MigrationError`` (one line) for a schema_migrations table we cannot share: a
    newer, older or dirty golang-migrate version, or columns neither program writes.
    """
    columns = await _tracking_columns(conn)
    legacy = columns == {"version", "name", "applied_at"}  # our releases before the shared bookkeeping
    if columns and not legacy and columns != {"version", "dirty"}:
        raise MigrationError(
            f"table {GO_TABLE} has columns {sorted(columns)}: neither golang-migrate's"
            " (version, dirty) nor an earlier parsec's; cannot share this database"
        )
    if columns == {"version", "dirty"}:
        row = await conn.fetchrow(f"SELECT version, dirty FROM {GO_TABLE} LIMIT 1")
        if row is not None:
            version, dirty = row["version"], row["dirty"]
            if dirty:
                raise MigrationError(
                    f"the Go parsec's schema is dirty at version {version} (a migration of it failed"
                    f" half-way): repair it (golang-migrate's `force`) before starting parsec"
                )
            if version > GO_SCHEMA_VERSION:
                raise MigrationError(
                    f"the database's Go parsec schema is version {version}, newer than the"
                    f" {GO_SCHEMA_VERSION} this parsec knows: upgrade parsec"
                )
            if version < GO_SCHEMA_VERSION:
                raise MigrationError(
                    f"the database's Go parsec schema is version {version}: let a current Go parsec"
                    f" migrate it to {GO_SCHEMA_VERSION} (or start on a fresh database)"
                )
            return False
    path = default_migrations_dir() / GO_SCHEMA_FILE
    moved = [(f"INSERT INTO {OWN_TABLE} (version, name, applied_at) SELECT version, name, applied_at"
              f" FROM {GO_TABLE} ON CONFLICT (version) DO NOTHING", ()), (f"DROP TABLE {GO_TABLE}", ())]
    await _run_sql(conn, f"the Go parsec's schema ({path.name})", _read(path, "the Go parsec's schema"),
                   before=moved if legacy else [],
                   after=[(_CREATE_GO_TRACKING, ()), (f"TRUNCATE {GO_TABLE}", ()),
                          (f"INSERT INTO {GO_TABLE} (version, dirty) VALUES ($1, false)", (GO_SCHEMA_VERSION,))])
    log.info(
        "created the Go parsec's schema (golang-migrate version %d)%s", GO_SCHEMA_VERSION,
        "; our bookkeeping moved to " + OWN_TABLE if legacy else "",
    )
    return True


def _location(sql: str, error: asyncpg.PostgresError) -> str:
    """' (line N)' when the server says where in the file it failed."""
    position = getattr(error, "position", None)
    if not position:
        return ""
    return f" (line {sql.count(chr(10), 0, int(position) - 1) + 1})"


def _read(path: Path, label: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise MigrationError(f"{label}: cannot read {path}: {error}") from None


Statements = list[tuple[str, tuple]]


async def _run_sql(conn: asyncpg.Connection, label: str, sql: str, *,
                   before: Statements = (), after: Statements = ()) -> None:
    """``before``, a file's SQL and ``after`` (its bookkeeping) in one transaction; a
    failure is a MigrationError naming ``label`` and, where the server says, the line."""
    try:
        async with conn.transaction():
            for statement, args in before:
                await conn.execute(statement, *args)
            await conn.execute(sql)
            for statement, args in after:
                await conn.execute(statement, *args)
    except asyncpg.PostgresError as error:
        raise MigrationError(f"{label} failed{_location(sql, error)}: {type(error).__name__}: {error}") from error


async def _run_file(conn: asyncpg.Connection, path: Path, record_sql: str, *args: object) -> None:
    """One of our files and its bookkeeping statement, in one transaction."""
    label = f"migration {path.name}"
    await _run_sql(conn, label, _read(path, label), after=[(record_sql, args)])


async def apply_migrations(
    db: asyncpg.Connection | asyncpg.Pool, directory: Path | None = None
) -> list[int]:
    """The Go parsec's schema if missing, then every pending up file of ours in order.

    Returns our versions applied (often none).
    """
    migrations = discover(directory)
    async with _locked(db) as conn:
        await _ensure_go_schema(conn)
        done = set(await _applied(conn))
        unknown = done - {migration.version for migration in migrations}
        if unknown:
            log.warning("database has migrations this code does not know: %s", sorted(unknown))
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            await _run_file(
                conn, migration.up,
                f"INSERT INTO {OWN_TABLE} (version, name) VALUES ($1, $2)",
                migration.version, migration.name,
            )
            log.info("applied migration %s", migration.up.name)
            applied.append(migration.version)
        return applied


async def migrate_down(
    db: asyncpg.Connection | asyncpg.Pool, to_version: int, directory: Path | None = None
) -> list[int]:
    """Revert our applied migrations above ``to_version``, newest first; returns those reverted.

    The Go parsec's tables and golang-migrate's row stay: Go binaries may share them.
    """
    by_version = {migration.version: migration for migration in discover(directory)}
    async with _locked(db) as conn:
        reverted = []
        for version in sorted(await _applied(conn), reverse=True):
            if version <= to_version:
                break
            migration = by_version.get(version)
            if migration is None or migration.down is None:
                raise MigrationError(f"cannot revert version {version}: no {version:04d}_*.down.sql file")
            await _run_file(conn, migration.down, f"DELETE FROM {OWN_TABLE} WHERE version = $1", version)
            log.info("reverted migration %s", migration.down.name)
            reverted.append(version)
        return reverted
