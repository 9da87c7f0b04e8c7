"""A deterministic measurement dataset with known numbers, written with the real ParquetSink.

Two weeks (Mondays 2024-03-04 and 2024-03-11), fleets ``default`` and ``optprov``, regions
eu-central-1 and us-west-1. In week 1 the successful ``default`` provides take 1..10 s
(eu) and 11..20 s (us), retrievals 0.1..1.0 s (eu) and 1.1..2.0 s (us); week 2 doubles
every duration. ``optprov`` provides take a quarter of ``default``'s, its retrievals the
same. Besides: one provide error (eu, week 1), two retrievals not found (us, week 1) and
three provides by a node with a cold routing table (rt_size 10, 500 s, eu, week 1) that an
``rt_size_min`` above 10 removes.

Path bound and host lag (the trace's ``path_bound_s`` and ``host_lag_ms``): every ``default``
trace says ``path_bound_s`` = half the week-1 duration of its slot (so duration ÷ bound is
2 in week 1 and 4 in week 2) and ``host_lag_ms`` = 6.25 × i ms for the i-th (0..9) slot of
its week and region (0 … 50 … 56.25: one in ten above 50 ms); the cold provides say 1 s
and 500 ms. ``optprov`` provides say ``host_lag_ms`` 2 and ``path_bound_s`` null (no
latency emulation); ``optprov`` retrievals carry neither, like another fleet's or an
older trace.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from parsec.store.parquet import ParquetSink
from parsec.store.records import MeasurementRecord

WEEKS = (datetime(2024, 3, 4, tzinfo=timezone.utc), datetime(2024, 3, 11, tzinfo=timezone.utc))
REGIONS = ("eu-central-1", "us-west-1")
FLEETS = ("default", "optprov")
NODES = {("default", "eu-central-1"): 1, ("default", "us-west-1"): 2,
         ("optprov", "eu-central-1"): 3, ("optprov", "us-west-1"): 4}
SCHEDULERS = {"default": 1, "optprov": 2}
PROVIDE_ERROR = "context deadline exceeded"


def _trace(fleet: str, kind: str, extra: dict) -> str:
    if kind == "provide":
        find = 30 if fleet == "default" else 10
        return json.dumps({"operation": "provide", "rpcs": {"FIND_NODE": find, "ADD_PROVIDER": 20},
                           "rpc_total": find + 20, "hops": 3 if fleet == "default" else 2, "peers_contacted": find,
                           **extra})
    return json.dumps({"operation": "retrieval", "rpcs": {"GET_PROVIDERS": 4}, "rpc_total": 4, "hops": 2,
                       "peers_contacted": 4, **extra})


def _bound_and_lag(fleet: str, kind: str, base: float, i: int) -> dict:
    """The trace's path_bound_s and host_lag_ms for the i-th slot whose week-1 duration is ``base``."""
    if fleet == "default":
        return {"path_bound_s": base / 2, "host_lag_ms": 6.25 * i}
    return {"host_lag_ms": 2.0, "path_bound_s": None} if kind == "provide" else {}


def records() -> list[MeasurementRecord]:
    out: list[MeasurementRecord] = []

    def add(kind, fleet, region, when, duration, *, error=None, rt_size=200, trace=True, extra=None):
        out.append(MeasurementRecord(
            op_id=f"{len(out):032x}", kind=kind, scheduler_id=SCHEDULERS[fleet], node_id=NODES[(fleet, region)],
            fleet=fleet, region=region, round=len(out), rt_size=rt_size, duration=duration, cid=f"Qm{len(out)}",
            error=error, step=kind, created_at=when,
            trace=_trace(fleet, kind, extra or {}) if trace and error is None else None))

    for week_index, monday in enumerate(WEEKS):
        factor = 2.0 if week_index else 1.0
        for region_index, region in enumerate(REGIONS):
            for i in range(10):
                when = monday + timedelta(days=i % 7, hours=6 + region_index, minutes=i)
                provide = factor * (1 + i + 10 * region_index)
                retrieval = factor * round(0.1 * (1 + i + 10 * region_index), 10)
                for fleet in FLEETS:
                    provided = provide if fleet == "default" else provide / 4
                    add("provide", fleet, region, when, provided,
                        extra=_bound_and_lag(fleet, "provide", provided / factor, i))
                    add("retrieval", fleet, region, when + timedelta(seconds=30), retrieval,
                        extra=_bound_and_lag(fleet, "retrieval", retrieval / factor, i))
    monday = WEEKS[0]
    add("provide", "default", "eu-central-1", monday + timedelta(hours=20), 180.0, error=PROVIDE_ERROR)
    for i in range(2):
        add("retrieval", "default", "us-west-1", monday + timedelta(hours=21, minutes=i), 5.0, error="not found")
    for i in range(3):
        add("provide", "default", "eu-central-1", monday + timedelta(hours=1, minutes=i), 500.0, rt_size=10,
            extra={"path_bound_s": 1.0, "host_lag_ms": 500.0})
    return out


def write(root: Path) -> Path:
    """The dataset under ``root`` (several files per partition), returned for chaining."""
    with ParquetSink(root, rotate_rows=7, rotate_seconds=3600, writer_id="gen") as sink:
        sink.write(records())
    return root


async def write_postgres(settings) -> int:
    """The same records into a fresh database (nodes and schedulers first, with the ids the
    records name); returns how many records were stored."""
    from parsec.store.db import NodeInfo, Repository, connect_pool
    from parsec.store.migrations import apply_migrations

    pool = await connect_pool(settings)
    try:
        await apply_migrations(pool)
        repo = Repository(pool)
        for fleet in SCHEDULERS:  # ids 1, 2 in order
            await repo.insert_scheduler([fleet], {"generator": "tests.analysis.dataset"})
        for (fleet, region), node_id in sorted(NODES.items(), key=lambda item: item[1]):
            assert node_id == await repo.insert_node(NodeInfo(
                cpu=2, memory=4096, peer_id=f"12D3KooWnode{node_id}", region=region, cmd="parsec server",
                fleet=fleet, dependencies={}, ip_address="127.0.0.1", server_port=7070 + node_id, peer_port=4001))
        return await repo.write_measurements(records())
    finally:
        await pool.close()


NEW_TRACE_KEYS = ("host_lag_ms", "path_bound_s")
NEW_TRACE_COLUMNS = ("trace_host_lag_ms", "trace_path_bound_s")


def without_bounds(record: MeasurementRecord) -> MeasurementRecord:
    """The record as a server without path bounds and host lag would have sent it."""
    if record.trace is None:
        return record
    doc = {k: v for k, v in json.loads(record.trace).items() if k not in NEW_TRACE_KEYS}
    return MeasurementRecord(**{**record.as_dict(), "trace": json.dumps(doc)})


def write_old_schema(root: Path, records_: list[MeasurementRecord] | None = None, *,
                     writer_id: str = "old") -> list[Path]:
    """Records as a sink from before ``trace_host_lag_ms``/``trace_path_bound_s`` wrote
    them: their traces without the two keys, and files without the two columns (one file
    per partition). Returns the files."""
    import pyarrow.parquet as pq

    from parsec.store import parquet

    groups: dict[tuple[str, str], list[MeasurementRecord]] = {}
    for record in (records() if records_ is None else records_):
        groups.setdefault(parquet.partition_of(record), []).append(without_bounds(record))
    files = []
    for (kind, date), group in sorted(groups.items()):
        table = parquet._to_table(group).drop_columns(list(NEW_TRACE_COLUMNS))
        assert table.schema.names == [n for n in parquet.FILE_SCHEMA.names if n not in NEW_TRACE_COLUMNS]
        path = Path(root) / f"kind={kind}" / f"date={date}" / f"part-{writer_id}-000000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        files.append(path)
    return files
