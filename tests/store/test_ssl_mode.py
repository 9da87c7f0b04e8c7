"""PARSEC_DATABASE_SSL_MODE is honoured: against a PostgreSQL serving TLS, ``require`` gives
an encrypted session and ``disable`` a plain one; against one without TLS, ``require``
is refused with a clear error instead of silently sending the password in the clear."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from parsec.store.db import StoreError, connect_pool
from parsec.store.embedded import OS_USER, EmbeddedPostgres


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    if os.geteuid() == 0:  # the server runs as `postgres` and must own its key
        entry = pwd.getpwnam(OS_USER)
        for path in (cert, key):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return cert, key


async def _session_is_encrypted(settings) -> bool:
    pool = await connect_pool(settings)
    try:
        return await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def tls_postgres():
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    data_dir = Path(tempfile.mkdtemp(prefix="parsec-tls-pg-"))
    data_dir.chmod(0o755)
    cert, key = _self_signed(data_dir)
    server = EmbeddedPostgres(data_dir, conf={"ssl": "on", "ssl_cert_file": f"'{cert}'", "ssl_key_file": f"'{key}'"})
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("mode,encrypted", [("require", True), ("prefer", True), ("disable", False)])
def test_ssl_mode_decides_whether_the_session_is_encrypted(tls_postgres, mode, encrypted):
    settings = tls_postgres.model_copy(update={"ssl_mode": mode})
    assert asyncio.run(_session_is_encrypted(settings)) is encrypted


def test_require_against_a_server_without_tls_is_a_clear_error(pg):
    settings = pg.model_copy(update={"ssl_mode": "require"})
    with pytest.raises(StoreError) as caught:
        asyncio.run(_session_is_encrypted(settings))
    message = str(caught.value)
    assert "cannot connect to PostgreSQL" in message and "SSL" in message.upper()
    assert not pg.password or pg.password not in message
