"""Shared fixtures: a real PostgreSQL for the session, and a fresh database per test.

CI starts a server and sets PARSEC_TEST_DATABASE_HOST/PORT/USER/PASSWORD/NAME (the user needs
CREATEDB); without them an embedded server runs in a temporary directory for the session.
Subfolders add their own fixtures in their own conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from parsec.config import DatabaseSettings


@pytest.fixture(scope="session", autouse=True)
def scheduler_spool_dir() -> Iterator[Path]:
    """Schedulers run by the tests keep their journals here, never in ~/.parsec/spool."""
    path = Path(tempfile.mkdtemp(prefix="parsec-test-spool-"))
    previous = os.environ.get("PARSEC_SCHEDULER_SPOOL_DIR")
    os.environ["PARSEC_SCHEDULER_SPOOL_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("PARSEC_SCHEDULER_SPOOL_DIR", None)
    else:
        os.environ["PARSEC_SCHEDULER_SPOOL_DIR"] = previous
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[DatabaseSettings]:
    """Settings of a running PostgreSQL whose user may create databases."""
    env = os.environ
    if env.get("PARSEC_TEST_DATABASE_HOST"):
        yield DatabaseSettings(
            host=env["PARSEC_TEST_DATABASE_HOST"],
            port=int(env.get("PARSEC_TEST_DATABASE_PORT", "5432")),
            user=env.get("PARSEC_TEST_DATABASE_USER", "postgres"),
            password=env.get("PARSEC_TEST_DATABASE_PASSWORD", ""),
            name=env.get("PARSEC_TEST_DATABASE_NAME", "postgres"),
        )
        return
    from parsec.store.embedded import EmbeddedPostgres

    # mkdtemp, not tmp_path: as root the `postgres` user must reach it, and pytest's
    # /tmp/pytest-of-root is private.
    data_dir = Path(tempfile.mkdtemp(prefix="parsec-test-pg-"))
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _admin(settings: DatabaseSettings, sql: str) -> None:
    conn = await asyncpg.connect(settings.dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_database(pg: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """A new, uniquely named database on the ``pg`` server, dropped on exit."""
    name = f"parsec_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(pg, f'CREATE DATABASE "{name}"'))
    try:
        yield pg.model_copy(update={"name": name})
    finally:
        asyncio.run(_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_db(pg: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """An empty database of its own on the ``pg`` server, dropped after the test."""
    with scratch_database(pg) as settings:
        yield settings
