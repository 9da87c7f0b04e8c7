"""PostgreSQL access for servers and schedulers: a pool, and one Repository holding the SQL.

All SQL against the original parsec tables lives here so they stay exactly as the Go tool's
analysis queries expect (interface.md, "Database"); our own richer record goes to
``measurements`` beside them. Writes of measurement batches are idempotent by ``op_id``, so a
scheduler may simply retry a batch after a database outage.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from parsec.config import DatabaseSettings
from parsec.store.records import FIELDS, MeasurementRecord


class StoreError(RuntimeError):
    """A database problem with a message fit for the user (never contains a password)."""


UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
               asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.TooManyConnectionsError,
               asyncpg.exceptions.InternalClientError)
"""What asyncpg raises while the server is down, restarting or out of reach (refused or
dropped connections, admin shutdown, "starting up", timeouts; a connection that broke in
the middle of a transaction reports "cannot switch to state …", an InternalClientError):
worth retrying, unlike a data error."""


def is_unreachable(error: BaseException) -> bool:
    return isinstance(error, UNREACHABLE)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Every pooled connection reads and writes json/jsonb as Python objects."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def connect_pool(
    settings: DatabaseSettings, *, min_size: int = 1, max_size: int = 4, timeout: float = 10.0
) -> asyncpg.Pool:
    """A connection pool, or a `StoreError` naming the database (not the password).

    With ``min_size >= 1`` the pool connects at once, so an unreachable database is reported
    here, at start-up, rather than at the first query.
    """
    try:
        return await asyncpg.create_pool(
            dsn=settings.dsn(),
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            init=_init_connection,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        reason = str(error) or f"{type(error).__name__} after {timeout:g} s"
        if settings.password:
            reason = reason.replace(settings.password, "***")
        raise StoreError(f"cannot connect to PostgreSQL at {settings.redacted()}: {reason}") from None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _port_to_smallint(port: int) -> int:
    """A port for the original's SMALLINT columns: 1-32767 only.

    A larger one would be stored negative and a Go scheduler would refuse the node
    (``invalid port ":-25535"``), so it is an error here; servers choose their ports in
    range (``parsec.net.ports``). Rows our releases before that wrote wrapped (40000 ->
    -25536) are still read right: ``discover_nodes`` unwraps (``& 65535``).
    """
    if not 1 <= port <= 32767:
        raise ValueError(f"port {port} does not fit the original's nodes_ecs (SMALLINT: 1-32767)")
    return port


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a server registers about itself at start (one nodes_ecs row per start)."""

    cpu: int
    memory: int  # MB
    peer_id: str
    region: str
    cmd: str
    fleet: str
    dependencies: dict
    ip_address: str
    server_port: int
    peer_port: int


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A live node as the scheduler sees it during discovery."""

    id: int
    peer_id: str
    fleet: str
    region: str
    ip_address: str  # plain address, no /32
    server_port: int
    peer_port: int
    last_heartbeat: datetime


_RESULT_TABLES = {"provide": "provides_ecs", "retrieval": "retrievals_ecs"}

_STAGING_COLUMNS = {
    "op_id": "uuid", "kind": "text", "scheduler_id": "int", "node_id": "int", "fleet": "text",
    "region": "text", "round": "int", "rt_size": "int", "duration": "float8", "cid": "text",
    "error": "text", "step": "text", "created_at": "timestamptz", "trace": "text",
}
_CREATE_STAGING = "CREATE TEMP TABLE parsec_staging ({}) ON COMMIT DROP".format(
    ", ".join(f"{name} {_STAGING_COLUMNS[name]}" for name in FIELDS)
)

# One statement: reserve each new op_id in `measurements` together with the id its row will
# get (taken from the result table's own identity sequence), then insert exactly those rows
# into provides_ecs / retrievals_ecs under that id. Racing writers of the same op_id wait on
# the primary key and the loser inserts nothing, so no duplicate result row can appear.
_MERGE_STAGING = """
WITH staged AS (
    SELECT DISTINCT ON (op_id) * FROM parsec_staging ORDER BY op_id
), fresh AS (
    INSERT INTO measurements
        (op_id, kind, row_id, scheduler_id, node_id, fleet, region, round, created_at)
    SELECT op_id, kind,
           CASE kind WHEN 'provide' THEN nextval(pg_get_serial_sequence('provides_ecs', 'id'))
                     ELSE nextval(pg_get_serial_sequence('retrievals_ecs', 'id')) END,
           scheduler_id, node_id, fleet, region, round, created_at
    FROM staged
    ON CONFLICT (op_id) DO NOTHING
    RETURNING op_id, kind, row_id
), provides AS (
    INSERT INTO provides_ecs
        (id, scheduler_id, node_id, rt_size, duration, cid, error, step, created_at)
    OVERRIDING SYSTEM VALUE
    SELECT f.row_id, s.scheduler_id, s.node_id, s.rt_size, s.duration, s.cid,
           NULLIF(s.error, ''), s.step, s.created_at
    FROM fresh f JOIN staged s USING (op_id)
    WHERE f.kind = 'provide'
), retrievals AS (
    INSERT INTO retrievals_ecs
        (id, scheduler_id, node_id, rt_size, duration, cid, error, created_at)
    OVERRIDING SYSTEM VALUE
    SELECT f.row_id, s.scheduler_id, s.node_id, s.rt_size, s.duration, s.cid,
           NULLIF(s.error, ''), s.created_at
    FROM fresh f JOIN staged s USING (op_id)
    WHERE f.kind = 'retrieval'
), traces AS (
    INSERT INTO traces (op_id, rpc_total, hops, peers_contacted, failures, strategy, host_lag_ms, path_bound_s,
                        detail)
    SELECT f.op_id, (t.doc->>'rpc_total')::int, (t.doc->>'hops')::int, (t.doc->>'peers_contacted')::int,
           (t.doc->>'failures')::int, t.doc->>'strategy',
           CASE WHEN jsonb_typeof(t.doc->'host_lag_ms') = 'number' THEN (t.doc->>'host_lag_ms')::float8 END,
           CASE WHEN jsonb_typeof(t.doc->'path_bound_s') = 'number' THEN (t.doc->>'path_bound_s')::float8 END,
           t.doc
    FROM fresh f JOIN (SELECT op_id, trace::jsonb AS doc FROM staged WHERE trace IS NOT NULL) t USING (op_id)
)
SELECT count(*) FROM fresh
"""


# The demo's closing table (``parsec.analysis.summary``), per result table: counts and
# percentile_cont quantiles of the successes per fleet, of the measurements made since $2
_FLEET_SUMMARY = """
SELECT n.fleet,
       count(*)                                                       AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration)
           FILTER (WHERE r.error IS NULL)                              AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY r.duration)
           FILTER (WHERE r.error IS NULL)                              AS p90,
       count(*) FILTER (WHERE r.error IS NOT NULL AND r.error <> 'not found') AS errors,
       count(*) FILTER (WHERE r.error = 'not found')                   AS not_found
FROM {table} r JOIN nodes_ecs n ON n.id = r.node_id
WHERE n.fleet = ANY($1::text[]) AND r.created_at >= $2
GROUP BY n.fleet ORDER BY n.fleet
"""

_FLEET_DURATIONS = """
SELECT n.fleet, r.duration FROM {table} r JOIN nodes_ecs n ON n.id = r.node_id
WHERE n.fleet = ANY($1::text[]) AND r.created_at >= $2 AND r.error IS NULL
"""

_SUMMARY_TABLES = (("provides", "provides_ecs"), ("retrievals", "retrievals_ecs"))


def _result_table(kind: str) -> str:
    try:
        return _RESULT_TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown measurement kind {kind!r}; known: provide, retrieval") from None


def _with_hex_op_ids(rows) -> list[dict]:
    """Rows as dicts with op_id in the records' form (uuid4 hex), None where there is none."""
    results = [dict(row) for row in rows]
    for row in results:
        row["op_id"] = row["op_id"].hex if row["op_id"] is not None else None
    return results


def _staging_row(record: MeasurementRecord) -> tuple:
    _result_table(record.kind)
    if record.created_at.tzinfo is None:
        raise ValueError(f"record {record.op_id}: created_at must be timezone-aware")
    return tuple(getattr(record, name) for name in FIELDS)


class Repository:
    """The parsec tables behind a pool; one method per thing a server or scheduler does.

    The pool must come from `connect_pool` (its connections map jsonb to Python objects).
    Data errors (e.g. a record naming an unknown node) surface as asyncpg exceptions.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_scheduler(self, fleets: list[str], dependencies: dict) -> int:
        """One schedulers_ecs row per scheduler start; its id tags every result row."""
        return await self.pool.fetchval(
            "INSERT INTO schedulers_ecs (fleets, dependencies, created_at)"
            " VALUES ($1, $2, $3) RETURNING id",
            list(fleets), dependencies, _utcnow(),
        )

    async def insert_node(self, info: NodeInfo) -> int:
        """One nodes_ecs row per server start. It stays undiscovered until its first heartbeat."""
        return await self.pool.fetchval(
            "INSERT INTO nodes_ecs (cpu, memory, peer_id, region, cmd, fleet, dependencies,"
            " ip_address, server_port, peer_port, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            info.cpu, info.memory, info.peer_id, info.region, info.cmd, info.fleet,
            info.dependencies, info.ip_address, _port_to_smallint(info.server_port),
            _port_to_smallint(info.peer_port), _utcnow(),
        )

    async def heartbeat(self, node_id: int) -> bool:
        """Set last_heartbeat = now(); False if the node is marked offline (or unknown).

        Unlike the original, a heartbeat does not undo an offline mark set by a scheduler
        whose readiness check failed: the server learns it is out and may re-register.
        """
        online = await self.pool.fetchval(
            "UPDATE nodes_ecs SET last_heartbeat = now() WHERE id = $1"
            " RETURNING offline_since IS NULL",
            node_id,
        )
        return bool(online)

    async def mark_offline(self, node_ids: list[int]) -> int:
        """Set offline_since = now() on those not yet offline; returns how many were marked."""
        status = await self.pool.execute(
            "UPDATE nodes_ecs SET offline_since = now()"
            " WHERE id = ANY($1::int[]) AND offline_since IS NULL",
            list(node_ids),
        )
        return int(status.split()[-1])

    async def retire_other_rows(self, cmd: str, node_id: int) -> int:
        """Mark offline every other online row with this ``cmd``: a restarted Ray actor's
        earlier incarnations (its cmd names the actor id). Returns how many were marked."""
        status = await self.pool.execute(
            "UPDATE nodes_ecs SET offline_since = now() WHERE cmd = $1 AND id <> $2 AND offline_since IS NULL",
            cmd, node_id,
        )
        return int(status.split()[-1])

    async def discover_nodes(self, fleets: list[str], heartbeat_window_s: float) -> list[NodeRow]:
        """Online nodes of these fleets that sent a heartbeat within the window, by id."""
        rows = await self.pool.fetch(
            "SELECT id, peer_id, fleet, region, host(ip_address) AS ip_address,"
            " server_port::int & 65535 AS server_port, peer_port::int & 65535 AS peer_port,"
            " last_heartbeat"
            " FROM nodes_ecs"
            " WHERE fleet = ANY($1::text[]) AND offline_since IS NULL"
            " AND last_heartbeat >= now() - make_interval(secs => $2)"
            " ORDER BY id",
            list(fleets), float(heartbeat_window_s),
        )
        return [NodeRow(**dict(row)) for row in rows]

    async def list_nodes(self, fleets: list[str] | None = None, include_offline: bool = False) -> list[dict]:
        """nodes_ecs rows for status displays (ports as registered, unwrapped), by fleet and id."""
        rows = await self.pool.fetch(
            "SELECT id, fleet, region, peer_id, host(ip_address) AS ip_address,"
            " server_port::int & 65535 AS server_port, peer_port::int & 65535 AS peer_port, cpu, memory,"
            " last_heartbeat, offline_since, created_at, now() - last_heartbeat AS heartbeat_age"
            " FROM nodes_ecs"
            " WHERE ($1::text[] IS NULL OR fleet = ANY($1::text[])) AND ($2 OR offline_since IS NULL)"
            " ORDER BY fleet, id",
            list(fleets) if fleets else None, include_offline,
        )
        return [dict(row) for row in rows]

    async def write_measurements(self, records: list[MeasurementRecord]) -> int:
        """Store a batch once: returns how many records were new (0 for a repeated batch).

        One transaction: COPY into a temporary staging table (fast for big batches), then a
        single statement moves the records whose op_id is new into `measurements` and into
        provides_ecs / retrievals_ecs.
        """
        if not records:
            return 0
        rows = [_staging_row(record) for record in records]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_CREATE_STAGING)
            await conn.copy_records_to_table("parsec_staging", records=rows, columns=FIELDS)
            return await conn.fetchval(_MERGE_STAGING)

    async def count_measurements(self, kind: str | None = None) -> int:
        """How many measurements are stored (of one kind, or all)."""
        if kind is None:
            return await self.pool.fetchval("SELECT count(*) FROM measurements")
        _result_table(kind)
        return await self.pool.fetchval("SELECT count(*) FROM measurements WHERE kind = $1", kind)

    async def fetch_results(self, kind: str) -> list[dict]:
        """All provides_ecs or retrievals_ecs rows, by id, with their op_id, round, fleet, region."""
        table = _result_table(kind)
        rows = await self.pool.fetch(
            f"SELECT t.*, m.op_id, m.round, m.fleet, m.region FROM {table} t"
            " LEFT JOIN measurements m ON m.kind = $1 AND m.row_id = t.id ORDER BY t.id",
            kind,
        )
        return _with_hex_op_ids(rows)

    async def fetch_for_analysis(self, kind: str, *, start: datetime | None = None, end: datetime | None = None,
                                 fleets: tuple[str, ...] | None = None, regions: tuple[str, ...] | None = None,
                                 rt_size_min: int = 0) -> list[dict]:
        """Result rows of one kind shaped like MeasurementRecord (plus the trace columns), for analysis.

        The trace columns are ``parsec.store.parquet.TRACE_COLUMNS``: ``trace_rpc_total``,
        ``trace_hops``, ``trace_peers_contacted``, ``trace_host_lag_ms`` and
        ``trace_path_bound_s`` (the last two NULL where the trace did not carry them).

        Read from the original tables, so rows a Go scheduler wrote count too: fleet and region
        come from ``measurements`` when we wrote the row, else from the node's ``nodes_ecs`` row;
        op_id, round and the trace are NULL for rows without a ``measurements`` entry.
        ``end`` is exclusive.
        """
        table = _result_table(kind)
        step = "t.step" if kind == "provide" else "'retrieval'"
        rows = await self.pool.fetch(
            f"SELECT m.op_id, $1::text AS kind, t.scheduler_id, t.node_id,"
            f" coalesce(m.fleet, n.fleet) AS fleet, coalesce(m.region, n.region) AS region, m.round,"
            f" t.rt_size, t.duration, t.cid, t.error, {step} AS step, t.created_at, tr.detail::text AS trace,"
            f" tr.rpc_total AS trace_rpc_total, tr.hops AS trace_hops, tr.peers_contacted AS trace_peers_contacted,"
            f" tr.host_lag_ms AS trace_host_lag_ms, tr.path_bound_s AS trace_path_bound_s"
            f" FROM {table} t JOIN nodes_ecs n ON n.id = t.node_id"
            " LEFT JOIN measurements m ON m.kind = $1 AND m.row_id = t.id"
            " LEFT JOIN traces tr ON tr.op_id = m.op_id"
            " WHERE ($2::timestamptz IS NULL OR t.created_at >= $2) AND ($3::timestamptz IS NULL OR t.created_at < $3)"
            " AND ($4::text[] IS NULL OR coalesce(m.fleet, n.fleet) = ANY($4::text[]))"
            " AND ($5::text[] IS NULL OR coalesce(m.region, n.region) = ANY($5::text[]))"
            " AND t.rt_size >= $6"
            " ORDER BY t.created_at, t.id",
            kind, start, end, list(fleets) if fleets else None, list(regions) if regions else None, rt_size_min,
        )
        return _with_hex_op_ids(rows)


    async def fleet_summary(self, fleets: list[str], since: datetime) -> dict[str, dict[str, dict]]:
        """``{fleet: {"provides": {...}, "retrievals": {...}}}`` straight from the contract tables,
        of the measurements made ``since`` (a run's own: the demo's database outlives runs): each
        kind's n, p50 and p90 of the successes, errors and not_found."""
        out: dict[str, dict[str, dict]] = {fleet: {} for fleet in fleets}
        for kind, table in _SUMMARY_TABLES:
            for row in await self.pool.fetch(_FLEET_SUMMARY.format(table=table), fleets, since):
                out.setdefault(row["fleet"], {})[kind] = dict(row)
        return out

    async def fleet_durations(self, fleets: list[str], since: datetime) -> dict[str, dict[str, list[float]]]:
        """``{kind: {fleet: [successful durations]}}`` from the contract tables, made ``since``."""
        out: dict[str, dict[str, list[float]]] = {}
        for kind, table in _SUMMARY_TABLES:
            per_fleet = out.setdefault(kind, {fleet: [] for fleet in fleets})
            for row in await self.pool.fetch(_FLEET_DURATIONS.format(table=table), fleets, since):
                per_fleet[row["fleet"]].append(float(row["duration"]))
        return out

    async def scheduler_operations(self, scheduler_ids: list[int]) -> list[dict]:
        """``op_id`` (uuid4 hex; None for a row without a ``measurements`` entry) and ``error`` of
        every provides_ecs and retrievals_ecs row these schedulers wrote (``parsec.scheduler.audit``)."""
        rows = await self.pool.fetch(
            "SELECT m.op_id, t.error FROM ("
            "  SELECT 'provide' AS kind, id, scheduler_id, error FROM provides_ecs"
            "  UNION ALL SELECT 'retrieval', id, scheduler_id, error FROM retrievals_ecs) t"
            " LEFT JOIN measurements m ON m.kind = t.kind AND m.row_id = t.id"
            " WHERE t.scheduler_id = ANY($1::int[])",
            scheduler_ids,
        )
        return _with_hex_op_ids(rows)

def fetch_rows(settings: DatabaseSettings, sql: str, *args: object) -> list[dict]:
    """Rows of one query as dicts, from synchronous code (benchmarks, audits, tests): a pool
    of its own for the call, closed after it."""

    async def run() -> list[dict]:
        pool = await connect_pool(settings)
        try:
            return [dict(row) for row in await pool.fetch(sql, *args)]
        finally:
            await pool.close()

    return asyncio.run(run())
