"""Schema migrations: numbered ``NNNN_name.up.sql`` / ``.down.sql`` files, applied once, in order.

Servers and schedulers all migrate at start (as the original does), often several at the
same moment. A session advisory lock serialises them: the first applies what is pending, the
others then find nothing left to do. Each file runs in its own transaction together with its
``schema_migrations`` row, so a failing file leaves nothing half-applied and the error names it.

The files live in the repository's ``migrations/`` directory (found relative to this package)
or wherever ``PARSEC_MIGRATIONS_DIR`` or the ``directory`` argument points.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from parsec.store.db import StoreError

log = logging.getLogger(__name__)

LOCK_KEY = 0x7061727365630001  # "parsec" + 1: one lock per database, shared by every process
_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>\w+)\.(?P<direction>up|down)\.sql$")
_CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


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
    """A connection holding the migration lock, with the tracking table in place."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, _locked(conn) as locked:
            yield locked
        return
    await db.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await db.execute(_CREATE_TRACKING)
        yield db
    finally:
        if not db.is_closed():  # a lost connection has released the lock already
            await db.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _applied(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


async def applied_versions(db: asyncpg.Connection | asyncpg.Pool) -> list[int]:
    """Versions recorded in schema_migrations, ascending."""
    async with _locked(db) as conn:
        return await _applied(conn)


def _location(sql: str, error: asyncpg.PostgresError) -> str:
    """' (line N)' when the server says where in the file it failed."""
    position = getattr(error, "position", None)
    if not position:
        return ""
    return f" (line {sql.count(chr(10), 0, int(position) - 1) + 1})"


async def _run_file(conn: asyncpg.Connection, path: Path, record_sql: str, *args: object) -> None:
    """One file and its bookkeeping statement, in one transaction."""
    try:
        sql = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MigrationError(f"migration {path.name}: cannot read {path}: {error}") from None
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(record_sql, *args)
    except asyncpg.PostgresError as error:
        raise MigrationError(
            f"migration {path.name} failed{_location(sql, error)}: {type(error).__name__}: {error}"
        ) from error


async def apply_migrations(
    db: asyncpg.Connection | asyncpg.Pool, directory: Path | None = None
) -> list[int]:
    """Apply every pending up file in order; returns the versions applied (often none)."""
    migrations = discover(directory)
    async with _locked(db) as conn:
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
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version, migration.name,
            )
            log.info("applied migration %s", migration.up.name)
            applied.append(migration.version)
        return applied


async def migrate_down(
    db: asyncpg.Connection | asyncpg.Pool, to_version: int, directory: Path | None = None
) -> list[int]:
    """Revert applied migrations above ``to_version``, newest first; returns those reverted."""
    by_version = {migration.version: migration for migration in discover(directory)}
    async with _locked(db) as conn:
        reverted = []
        for version in sorted(await _applied(conn), reverse=True):
            if version <= to_version:
                break
            migration = by_version.get(version)
            if migration is None or migration.down is None:
                raise MigrationError(f"cannot revert version {version}: no {version:04d}_*.down.sql file")
            await _run_file(conn, migration.down, "DELETE FROM schema_migrations WHERE version = $1", version)
            log.info("reverted migration %s", migration.down.name)
            reverted.append(version)
        return reverted
