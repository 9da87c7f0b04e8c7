"""EmbeddedPostgres: starts on loopback, stops, and a restart reuses the same cluster."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from parsec.config import DatabaseSettings
from parsec.store.db import StoreError
from parsec.store.embedded import EmbeddedPostgres, candidate_bin_dirs, find_bin_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # mkdtemp, not tmp_path: as root, the `postgres` user must be able to reach it
    path = Path(tempfile.mkdtemp(prefix="parsec-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def query(settings: DatabaseSettings, sql: str) -> object:
    conn = await asyncpg.connect(settings.dsn(), timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_start_stop_restart_reuses_the_cluster(data_dir: Path):
    server = EmbeddedPostgres(data_dir)
    with server as settings:
        assert (settings.host, settings.name, settings.user) == ("127.0.0.1", "parsec", "parsec")
        assert asyncio.run(query(settings, "SHOW listen_addresses")) == "127.0.0.1"
        asyncio.run(query(settings, "CREATE TABLE kept AS SELECT 41 + 1 AS answer"))
        assert server.start() is settings  # already running: same settings
    with pytest.raises(OSError):
        asyncio.run(query(settings, "SELECT 1"))  # stopped: nothing listens any more
    initialised = (data_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns

    with EmbeddedPostgres(data_dir) as again:
        assert again.password == settings.password
        assert asyncio.run(query(again, "SELECT answer FROM kept")) == 42
    assert (data_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns == initialised


def test_second_server_on_a_running_data_dir_is_refused(data_dir: Path):
    with EmbeddedPostgres(data_dir):
        with pytest.raises(StoreError, match="already running"):
            EmbeddedPostgres(data_dir).start()


def test_no_binaries_is_a_clear_error(data_dir: Path, tmp_path: Path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        find_bin_dir([tmp_path])
    with pytest.raises(StoreError, match="no PostgreSQL binaries"):
        EmbeddedPostgres(data_dir, bin_dir=tmp_path).start()


def test_pgserver_binaries_as_fallback(data_dir: Path):
    bundled = [d for d in candidate_bin_dirs() if "pgserver" in d.parts]
    if not bundled:
        pytest.skip("pgserver is not installed")
    with EmbeddedPostgres(data_dir, bin_dir=bundled[0]) as settings:
        assert asyncio.run(query(settings, "SELECT 1")) == 1
