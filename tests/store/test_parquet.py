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
