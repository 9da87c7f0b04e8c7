"""ParquetSink: finished files are readable while the writer runs, and values round-trip."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from parsec.store.parquet import TRACE_COLUMNS, ParquetSink, read_dataset
from parsec.store.records import FIELDS, MeasurementRecord

T0 = datetime(2024, 3, 1, 23, 59, 58, 123456, tzinfo=timezone.utc)


def records(count: int, kind: str = "provide", *, start: datetime = T0) -> list[MeasurementRecord]:
    return [
        MeasurementRecord(
            op_id=uuid.uuid4().hex, kind=kind, scheduler_id=1, node_id=2 + i % 3, fleet="default",
            region="eu-central-1", round=i, rt_size=200 + i, duration=0.5 * i, cid=f"Qm{i}",
            error=None if i % 2 == 0 else "not found", step=kind,
            created_at=start + timedelta(seconds=i),
        )
        for i in range(count)
    ]


def visible_files(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


def test_rotation_by_rows_publishes_readable_files_while_open(tmp_path: Path):
    sink = ParquetSink(tmp_path, rotate_rows=3, rotate_seconds=3600, writer_id="sched-1")
    sink.write(records(7, start=datetime(2024, 3, 1, tzinfo=timezone.utc)))
    files = visible_files(tmp_path)
    assert [f.name for f in files] == ["part-sched-1-000000.parquet", "part-sched-1-000001.parquet"]
    assert all(pq.read_metadata(f).num_rows == 3 for f in files)
    assert len(read_dataset(tmp_path)) == 6  # the 7th row is not published yet
    sink.close()
    assert len(read_dataset(tmp_path)) == 7
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    with pytest.raises(RuntimeError):
        sink.write(records(1))


def test_rotation_by_age(tmp_path: Path):
    sink = ParquetSink(tmp_path, rotate_rows=1000, rotate_seconds=60, writer_id="w")
    sink.write(records(2))
    sink.maybe_rotate(time.monotonic() + 30)
    assert visible_files(tmp_path) == []
    sink.maybe_rotate(time.monotonic() + 61)
    assert len(visible_files(tmp_path)) == 1
    sink.close()


def test_round_trip_with_partitions(tmp_path: Path):
    sent = records(4, "provide") + records(3, "retrieval")  # T0 is 2 s before midnight UTC
    with ParquetSink(tmp_path, writer_id="w") as sink:
        sink.write(sent)
    partitions = sorted(str(f.parent.relative_to(tmp_path)) for f in visible_files(tmp_path))
    assert partitions == [
        "kind=provide/date=2024-03-01", "kind=provide/date=2024-03-02",
        "kind=retrieval/date=2024-03-01", "kind=retrieval/date=2024-03-02",
    ]
    frame = read_dataset(tmp_path).sort_values(["kind", "round"]).reset_index(drop=True)
    assert list(frame.columns) == [*FIELDS, *TRACE_COLUMNS, "date"]
    expected = sorted(sent, key=lambda r: (r.kind, r.round))
    for name in FIELDS:
        got, want = frame[name].tolist(), [getattr(r, name) for r in expected]
        if name in ("error", "trace"):  # nullable strings read back as NaN
            got = [None if pd.isna(value) else value for value in got]
        assert got == want, name
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame["date"].tolist()[:2] == ["2024-03-01", "2024-03-01"]
    assert len(pd.read_parquet(tmp_path)) == len(sent)  # generic readers understand it too


def test_trace_columns_are_parsed_from_the_trace(tmp_path: Path):
    traced = [MeasurementRecord(**{**r.as_dict(), "trace": '{"rpc_total": 12, "hops": 3, "peers_contacted": 9}'})
              for r in records(2)]
    with ParquetSink(tmp_path, writer_id="t") as sink:
        sink.write(traced + records(1, "retrieval"))
    frame = read_dataset(tmp_path).sort_values("kind")
    assert frame["trace_rpc_total"].tolist()[:2] == [12, 12]
    assert frame["trace_hops"].tolist()[:2] == [3, 3]
    assert pd.isna(frame["trace_rpc_total"].tolist()[2]) and pd.isna(frame["trace"].tolist()[2])


def test_restarted_writer_does_not_overwrite(tmp_path: Path):
    for _ in range(2):
        with ParquetSink(tmp_path, writer_id="same") as sink:
            sink.write(records(2))
    assert len(visible_files(tmp_path)) == 2
    assert len(read_dataset(tmp_path)) == 4


def test_empty_or_missing_root_reads_as_empty_frame(tmp_path: Path):
    frame = read_dataset(tmp_path / "nothing")
    assert frame.empty and list(frame.columns) == [*FIELDS, *TRACE_COLUMNS, "date"]


def test_bad_input_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError):
        ParquetSink(tmp_path, writer_id="../escape")
    sink = ParquetSink(tmp_path, writer_id="w")
    naive = MeasurementRecord(**{**records(1)[0].as_dict(), "created_at": datetime(2024, 1, 1)})
    with pytest.raises(ValueError, match="timezone-aware"):
        sink.write([naive])


def test_float_trace_columns_take_finite_numbers_only(tmp_path: Path):
    traces = [
        '{"host_lag_ms": 12.5, "path_bound_s": 0.75, "hops": 2}',
        '{"host_lag_ms": 3, "path_bound_s": null}',               # an int is a float here; null stays null
        '{"host_lag_ms": true, "path_bound_s": "0.5", "hops": 2.0}',  # neither a bool nor a string is a number
        '{"host_lag_ms": NaN, "path_bound_s": Infinity}',           # what json.dumps writes for them
        '["not", "an", "object"]',
        '{"rpc_total": 4}',                                      # another fleet's (or an older) trace
    ]
    sent = [MeasurementRecord(**{**r.as_dict(), "trace": t}) for r, t in zip(records(len(traces)), traces)]
    with ParquetSink(tmp_path, writer_id="f") as sink:
        sink.write(sent)
    frame = read_dataset(tmp_path).sort_values("round").reset_index(drop=True)
    assert str(frame["trace_host_lag_ms"].dtype) == "float64" and str(frame["trace_path_bound_s"].dtype) == "float64"
    lag = [None if pd.isna(v) else v for v in frame["trace_host_lag_ms"]]
    bound = [None if pd.isna(v) else v for v in frame["trace_path_bound_s"]]
    assert lag == [12.5, 3.0, None, None, None, None]
    assert bound == [0.75, None, None, None, None, None]
    assert [None if pd.isna(v) else v for v in frame["trace_hops"]] == [2, None, None, None, None, None]


def _old_schema_file(root: Path, sent: list[MeasurementRecord], name: str) -> Path:
    """A file as the sink wrote it before the float trace columns existed."""
    from parsec.store import parquet

    table = parquet._to_table(sent).drop_columns(["trace_host_lag_ms", "trace_path_bound_s"])
    kind, date = parquet.partition_of(sent[0])
    path = root / f"kind={kind}" / f"date={date}" / f"part-{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_files_without_the_newer_trace_columns_still_read(tmp_path: Path):
    trace = '{"rpc_total": 7, "hops": 2, "peers_contacted": 5, "host_lag_ms": 61.0, "path_bound_s": 0.4}'
    start = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    old = [MeasurementRecord(**{**r.as_dict(), "trace": '{"rpc_total": 9, "hops": 3}'})
           for r in records(3, start=start)]
    new = [MeasurementRecord(**{**r.as_dict(), "trace": trace}) for r in records(2, start=start + timedelta(hours=1))]
    old_file = _old_schema_file(tmp_path, old, "old-000000")
    assert "trace_host_lag_ms" not in pq.read_schema(old_file).names
    with ParquetSink(tmp_path, writer_id="new") as sink:  # the same partition as the old file
        sink.write(new)
    frame = read_dataset(tmp_path).sort_values("created_at").reset_index(drop=True)
    assert list(frame.columns) == [*FIELDS, *TRACE_COLUMNS, "date"]
    assert len(frame) == 5
    assert frame["trace_rpc_total"].tolist() == [9, 9, 9, 7, 7]
    assert frame["trace_host_lag_ms"].isna().tolist() == [True, True, True, False, False]
    assert frame["trace_host_lag_ms"].tolist()[3:] == [61.0, 61.0]
    assert frame["trace_path_bound_s"].tolist()[3:] == [0.4, 0.4]
    only_old = tmp_path / "only-old"
    _old_schema_file(only_old, old, "old-000000")
    frame = read_dataset(only_old)
    assert len(frame) == 3 and frame["trace_path_bound_s"].isna().all()
    assert list(frame.columns) == [*FIELDS, *TRACE_COLUMNS, "date"]
