"""An embedded PostgreSQL for the default set-up, so the demo needs no database installed.

Why our own wrapper rather than pgserver's server class: we want the machine's binaries
first (the same major version as a CI server), the pgserver wheel's only as a fallback; a
fresh free port on 127.0.0.1 only, a unix socket in a directory of its own; a ``stop()`` that
touches nothing but our own data dir; and the role/database the rest of parsec expects.

Layout of ``data_dir``: ``pgdata/`` (the cluster, initdb'd once and reused), ``postgres.log``,
``password`` (the ``parsec`` role's, 0600) and ``run/`` (the socket, when the path is short
enough for a unix socket; else a private temporary directory).

As root, PostgreSQL refuses to run: the data dir is then given to the ``postgres`` OS user
and every binary runs through ``runuser -u postgres --``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from parsec.config import DatabaseSettings
from parsec.store.db import StoreError

log = logging.getLogger(__name__)

ROLE = DATABASE = "parsec"
SUPERUSER = "postgres"  # bootstrap role, reachable only through the private unix socket
OS_USER = "postgres"  # who runs the server when we are root
_BINARIES = ("initdb", "pg_ctl", "postgres")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, minus "/.s.PGSQL.65535"
_PORT_ATTEMPTS = 3
_HBA = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"


def candidate_bin_dirs() -> list[Path]:
    """Where PostgreSQL binaries may be: PATH, /usr/lib/postgresql/*/bin (newest first), pgserver."""
    found = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    found += sorted(versioned, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                    reverse=True)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        found += [Path(location) / "pginstall" / "bin" for location in spec.submodule_search_locations]
    return list(dict.fromkeys(found))


def major_version(bin_dir: Path) -> int | None:
    """The major version of the binaries in ``bin_dir`` (``pg_ctl --version``)."""
    try:
        out = subprocess.run([str(bin_dir / "pg_ctl"), "--version"],
                             capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return None
    match = re.search(r"\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def find_bin_dir(candidates: Iterable[Path] | None = None, *, major: int | None = None) -> Path:
    """The first directory holding initdb, pg_ctl and postgres (of version ``major`` if given)."""
    searched = list(candidates) if candidates is not None else candidate_bin_dirs()
    for bin_dir in searched:
        if not all(os.access(bin_dir / name, os.X_OK) for name in _BINARIES):
            continue
        if major is None or major_version(bin_dir) == major:
            return bin_dir
    wanted = f"PostgreSQL {major} binaries" if major else "PostgreSQL binaries"
    raise StoreError(
        f"no {wanted} ({', '.join(_BINARIES)}) found; searched: "
        f"{', '.join(map(str, searched)) or 'nothing'}. Install PostgreSQL, or `pip install pgserver`, "
        "or point PARSEC_DATABASE_HOST at a running server."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_coroutine(coroutine) -> object:
    """Run a coroutine to completion from sync code, even if this thread has a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _provision(socket_dir: Path, port: int, password: str) -> None:
    """Create (or re-password) role ``parsec`` and database ``parsec``, as the superuser."""
    conn = await asyncpg.connect(host=str(socket_dir), port=port, user=SUPERUSER, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
        verb = "ALTER" if exists else "CREATE"
        quoted = password.replace("'", "''")
        await conn.execute(f"{verb} ROLE {ROLE} LOGIN CREATEDB PASSWORD '{quoted}'")
        # DROP DATABASE … WITH (FORCE) must be able to end an autovacuum worker on it
        await conn.execute(f"GRANT pg_signal_backend TO {ROLE}")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    finally:
        await conn.close()


class EmbeddedPostgres:
    """A private PostgreSQL server in ``data_dir``; ``start()`` gives its DatabaseSettings.

    Also a context manager: ``with EmbeddedPostgres(path) as settings: ...``.
    """

    def __init__(self, data_dir: Path, *, bin_dir: Path | None = None, conf: dict[str, str] | None = None) -> None:
        """``conf``: extra ``postgresql.conf`` settings (values written as given, e.g. ``"'x.pem'"``)."""
        self.data_dir = Path(data_dir).absolute()
        self.conf = dict(conf or {})
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self.bin_dir = bin_dir
        self.settings: DatabaseSettings | None = None
        self._as_root = os.geteuid() == 0
        self._socket_dir: Path | None = None

    # -- process plumbing ---------------------------------------------------------------

    def _run(self, binary: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / binary), *map(str, args)]
        if self._as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        # cwd: the tools call getcwd(), which fails for `postgres` in e.g. /root
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.data_dir)

    def _give(self, path: Path) -> None:
        """As root, hand a path we created to the server's OS user."""
        if self._as_root:
            entry = pwd.getpwnam(OS_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _ensure_os_user(self) -> None:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            log.warning("creating system user %r to run PostgreSQL (it refuses to run as root)", OS_USER)
            subprocess.run(["useradd", "--system", "--no-create-home", OS_USER], check=True, capture_output=True)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def _log_size(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    # -- steps of start() ---------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            self._ensure_os_user()
            self._give(self.data_dir)
            if subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(self.data_dir)]).returncode:
                raise StoreError(
                    f"the {OS_USER!r} OS user cannot write {self.data_dir}: make its parent "
                    "directories traversable (chmod o+x) or choose a data dir under e.g. /tmp"
                )
        own = self.data_dir / "run"
        if len(str(own)) < _SOCKET_PATH_MAX:
            own.mkdir(mode=0o700, exist_ok=True)
            self._socket_dir = own
        else:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="parsec-pg-"))
        self._give(self._socket_dir)

    def _initdb(self) -> None:
        """initdb once; the data dir is reused as long as it exists."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        result = self._run("initdb", "-D", self.pgdata, "-U", SUPERUSER, "--auth=trust",
                           "--encoding=UTF8", "--locale=C", "--no-sync")
        if result.returncode != 0:
            raise StoreError(f"initdb failed in {self.pgdata}:\n{result.stderr.strip()}")
        (self.pgdata / "pg_hba.conf").write_text(_HBA)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'parsec.conf'\n")

    def _password(self) -> str:
        path = self.data_dir / "password"
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(16))
        return path.read_text().strip()

    def _write_conf(self, port: int) -> None:
        socket_dir = str(self._socket_dir).replace("'", "''")
        conf = self.pgdata / "parsec.conf"
        conf.write_text(
            "# written by parsec.store.embedded at every start\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            + "".join(f"{name} = {value}\n" for name, value in self.conf.items())
        )
        self._give(conf)

    def _launch(self) -> int:
        """pg_ctl start on a free port; retried when another process took the port first."""
        if self._run("pg_ctl", "status", "-D", self.pgdata).returncode == 0:
            raise StoreError(f"a PostgreSQL server is already running on {self.pgdata}; "
                             f"stop it with: pg_ctl stop -D {self.pgdata}")
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            self._write_conf(port)
            offset = self._log_size()
            result = self._run("pg_ctl", "start", "-D", self.pgdata, "-l", self.log_file, "-w", "-t", "30")
            if result.returncode == 0:
                return port
            server_log = self._log_since(offset)
            if "could not bind" not in server_log:
                break
        raise StoreError(f"PostgreSQL did not start in {self.pgdata}:\n"
                         f"{result.stderr.strip()}\n{server_log}".strip())

    # -- public -------------------------------------------------------------------------

    def start(self) -> DatabaseSettings:
        """Start the server (initdb first if new); settings for role and database ``parsec``."""
        if self.settings is not None:
            return self.settings
        existing = self.pgdata / "PG_VERSION"
        if self.bin_dir is None:
            major = int(existing.read_text().strip()) if existing.exists() else None
            self.bin_dir = find_bin_dir(major=major)
        else:
            find_bin_dir([self.bin_dir])
        self._prepare_dirs()
        self._initdb()
        password = self._password()
        port = self._launch()
        try:
            run_coroutine(_provision(self._socket_dir, port, password))
        except Exception as error:
            self._stop_server()
            raise StoreError(f"PostgreSQL started in {self.pgdata}, but creating role and "
                             f"database {ROLE!r} failed: {error}") from error
        self.settings = DatabaseSettings(host="127.0.0.1", port=port, name=DATABASE, user=ROLE,
                                         password=password, ssl_mode="disable")
        log.info("embedded PostgreSQL (%s) at %s", self.bin_dir, self.settings.redacted())
        return self.settings

    def _stop_server(self) -> None:
        result = self._run("pg_ctl", "stop", "-D", self.pgdata, "-m", "fast", "-w", "-t", "30")
        if result.returncode != 0 and self._run("pg_ctl", "status", "-D", self.pgdata).returncode == 0:
            raise StoreError(f"could not stop PostgreSQL in {self.pgdata}: {result.stderr.strip()}")
        if self._socket_dir is not None and self._socket_dir.parent != self.data_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def stop(self) -> None:
        """Stop the server this object started (fast shutdown); a no-op otherwise."""
        if self.settings is None:
            return
        self._stop_server()
        self.settings = None

    def pause(self, mode: str = "fast") -> None:
        """Stop the server but keep its address: ``resume()`` brings it back on the same
        port, as a database restart looks to its clients (fault tests, bench/chaos.py).
        ``mode``: pg_ctl's ``fast`` (sessions ended cleanly) or ``immediate`` (a crash)."""
        if self.settings is None:
            raise StoreError(f"no server of ours runs on {self.pgdata}")
        result = self._run("pg_ctl", "stop", "-D", self.pgdata, "-m", mode, "-w", "-t", "30")
        if result.returncode != 0:
            raise StoreError(f"could not stop PostgreSQL in {self.pgdata}: {result.stderr.strip()}")

    def resume(self) -> DatabaseSettings:
        """Start a paused server again, on the port it had."""
        if self.settings is None:
            raise StoreError(f"no paused server on {self.pgdata}: use start()")
        offset = self._log_size()
        result = self._run("pg_ctl", "start", "-D", self.pgdata, "-l", self.log_file, "-w", "-t", "60")
        if result.returncode != 0:
            raise StoreError(f"PostgreSQL did not restart in {self.pgdata}:\n{result.stderr.strip()}\n"
                             f"{self._log_since(offset)}".strip())
        return self.settings

    def __enter__(self) -> DatabaseSettings:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
