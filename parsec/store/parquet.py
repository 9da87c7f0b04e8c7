"""Parquet sink: the measurements as a Hive-partitioned dataset for notebooks and offline work.

Layout: ``root/kind=<kind>/date=<YYYY-MM-DD>/part-<writer_id>-<seq>.parquet`` (date of
``created_at`` in UTC). ``kind`` lives only in the path: were it also a column, generic readers
(``pd.read_parquet(root)``) would fail to merge it with the partition field.

A Parquet file is unreadable until its footer is written at close, so a half-written file
would break every reader of the dataset. The sink therefore buffers each partition's rows as
Arrow tables (compact, columnar) and publishes a file in one go — written under a hidden
``.part-….tmp`` name, which dataset readers skip, then renamed — once ``rotate_rows`` rows are
buffered, once the oldest buffered row is ``rotate_seconds`` old (checked on ``write`` and
``maybe_rotate``), and on ``flush``/``close``. Readers see finished files only, while the
writer runs; a crash loses at most the buffered rows, as an open streaming writer (no footer
yet) would. Each file is one row group.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from parsec.store.records import FIELDS, MeasurementRecord

_TYPES = {
    "op_id": pa.string(), "scheduler_id": pa.int32(), "node_id": pa.int32(),
    "fleet": pa.string(), "region": pa.string(), "round": pa.int32(), "rt_size": pa.int32(),
    "duration": pa.float64(), "cid": pa.string(), "error": pa.string(), "step": pa.string(),
    "created_at": pa.timestamp("us", tz="UTC"), "trace": pa.string(),
}
# Parsed from ``trace`` so analyses can filter and aggregate without decoding JSON: column ->
# (trace key, type). Null where the trace lacks the key or holds no number of that type.
# ``host_lag_ms`` (the largest event-loop lag the timing process saw during the operation)
# and ``path_bound_s`` (the latency model's lower bound for the operation's path, on a
# latency-emulated testbed only) come from our engine's servers; other fleets' traces and
# files written before these columns existed lack them, and read back as null.
TRACE_COLUMNS = {"trace_rpc_total": ("rpc_total", pa.int32()), "trace_hops": ("hops", pa.int32()),
                 "trace_peers_contacted": ("peers_contacted", pa.int32()),
                 "trace_host_lag_ms": ("host_lag_ms", pa.float64()),
                 "trace_path_bound_s": ("path_bound_s", pa.float64())}
PARTITION_SCHEMA = pa.schema([pa.field("kind", pa.string()), pa.field("date", pa.string())])
# A KeyError here means records.py gained a field: give it a Parquet type above.
FILE_SCHEMA = pa.schema(
    [pa.field(name, _TYPES[name], nullable=name in ("error", "trace")) for name in FIELDS if name != "kind"]
    + [pa.field(name, kind) for name, (_, kind) in TRACE_COLUMNS.items()]
)
_WRITER_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_COLUMNS = [*FIELDS, *TRACE_COLUMNS, "date"]


@dataclass
class _Buffer:
    """Rows waiting to become one file of one partition."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0  # monotonic time of the oldest buffered row


def partition_of(record: MeasurementRecord) -> tuple[str, str]:
    """The ``(kind, date)`` partition a record is written to (date of created_at, UTC)."""
    if record.created_at.tzinfo is None:
        raise ValueError(f"record {record.op_id}: created_at must be timezone-aware")
    return record.kind, record.created_at.astimezone(timezone.utc).date().isoformat()


def _trace_doc(record: MeasurementRecord) -> dict:
    if not record.trace:
        return {}
    try:
        doc = json.loads(record.trace)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _trace_value(doc: dict, key: str, kind: pa.DataType) -> int | float | None:
    """``doc[key]`` if it fits the column: an int for integer columns; any finite number
    (not a bool) for float columns. Else None."""
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if pa.types.is_integer(kind):
        return value if isinstance(value, int) else None
    return float(value) if math.isfinite(value) else None


def _to_table(records: list[MeasurementRecord]) -> pa.Table:
    columns = {name: [getattr(record, name) for record in records] for name in FIELDS if name != "kind"}
    docs = [_trace_doc(record) for record in records]
    for column, (key, kind) in TRACE_COLUMNS.items():
        columns[column] = [_trace_value(doc, key, kind) for doc in docs]
    return pa.Table.from_pydict(columns, schema=FILE_SCHEMA)


class ParquetSink:
    """Writes MeasurementRecords under ``root``; one writer_id per process keeps names unique."""

    def __init__(self, root: Path, *, rotate_rows: int = 1000, rotate_seconds: float = 60.0,
                 writer_id: str, on_publish: Callable[[list[str]], None] | None = None) -> None:
        if not _WRITER_ID.match(writer_id):
            raise ValueError(f"writer_id must be a plain file-name part, got {writer_id!r}")
        if rotate_rows < 1 or rotate_seconds < 0:
            raise ValueError("rotate_rows must be >= 1 and rotate_seconds >= 0")
        self.root = Path(root)
        self.rotate_rows = rotate_rows
        self.rotate_seconds = rotate_seconds
        self.writer_id = writer_id
        self.files_written: list[Path] = []
        self.on_publish = on_publish  # told the op_ids of every file once it is readable
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._seq = 0
        self._closed = False

    def write(self, records: list[MeasurementRecord]) -> None:
        """Buffer records; publishes every file that reaches rotate_rows or rotate_seconds."""
        if self._closed:
            raise RuntimeError("ParquetSink is closed")
        groups: dict[tuple[str, str], list[MeasurementRecord]] = {}
        for record in records:
            groups.setdefault(partition_of(record), []).append(record)
        now = time.monotonic()
        for key, group in groups.items():
            table = _to_table(group)
            offset = 0
            while offset < table.num_rows:
                buffer = self._buffers.setdefault(key, _Buffer(since=now))
                take = min(self.rotate_rows - buffer.rows, table.num_rows - offset)
                buffer.tables.append(table.slice(offset, take))
                buffer.rows += take
                offset += take
                if buffer.rows >= self.rotate_rows:
                    self._publish(key)
        self.maybe_rotate(now)

    def maybe_rotate(self, now: float | None = None) -> None:
        """Publish partitions whose oldest row waited rotate_seconds (``now``: monotonic)."""
        now = time.monotonic() if now is None else now
        for key in [k for k, b in self._buffers.items() if now - b.since >= self.rotate_seconds]:
            self._publish(key)

    def flush(self) -> None:
        """Publish everything buffered; the sink stays usable."""
        for key in list(self._buffers):
            self._publish(key)

    def close(self) -> None:
        self.flush()
        self._closed = True

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _publish(self, key: tuple[str, str]) -> None:
        buffer = self._buffers.pop(key)
        directory = self.root / f"kind={key[0]}" / f"date={key[1]}"
        directory.mkdir(parents=True, exist_ok=True)
        final = self._next_name(directory)
        temporary = directory / f".{final.name}.tmp"
        table = pa.concat_tables(buffer.tables)
        pq.write_table(table, temporary)
        temporary.replace(final)
        self.files_written.append(final)
        if self.on_publish is not None:
            self.on_publish(table.column("op_id").to_pylist())

    def _next_name(self, directory: Path) -> Path:
        """The next free part file name: a restarted writer never overwrites its old files."""
        while True:
            candidate = directory / f"part-{self.writer_id}-{self._seq:06d}.parquet"
            self._seq += 1
            if not candidate.exists():
                return candidate


def published_op_ids(root: Path, partitions: set[tuple[str, str]], since: float = 0.0) -> set[str]:
    """op_ids in the finished files of these ``(kind, date)`` partitions modified at or after
    ``since`` (epoch seconds): what a crashed writer published before it could say so."""
    found: set[str] = set()
    for kind, date in partitions:
        for path in (Path(root) / f"kind={kind}" / f"date={date}").glob("part-*.parquet"):
            if path.stat().st_mtime >= since:
                found.update(pq.read_table(path, columns=["op_id"]).column("op_id").to_pylist())
    return found


def read_dataset(root: Path) -> pd.DataFrame:
    """Every finished file under ``root`` as one DataFrame, with ``kind`` and ``date`` columns.

    The files are read with today's ``FILE_SCHEMA``: a column an older file lacks (e.g.
    ``trace_host_lag_ms``, added later) reads as null for its rows.
    """
    root = Path(root)
    files = sorted(str(path) for path in root.glob("kind=*/date=*/part-*.parquet"))
    schema = pa.schema([*FILE_SCHEMA, *PARTITION_SCHEMA])
    if not files:
        return schema.empty_table().to_pandas()[_COLUMNS]
    dataset = ds.dataset(
        files, schema=schema, format="parquet", partition_base_dir=str(root),
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
    )
    return dataset.to_table().to_pandas()[_COLUMNS]
