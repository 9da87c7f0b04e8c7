"""Loaders: the generated dataset read back through pyarrow filters, and from a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

import pyarrow.parquet as pq

from parsec.analysis import load
from parsec.analysis.load import DataError
from parsec.store.parquet import ParquetSink
from tests.analysis import dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return dataset.write(tmp_path_factory.mktemp("parquet"))


def test_everything_loads_with_one_shape(root):
    frame = load.measurements(parquet_dir=root)
    assert list(frame.columns) == load.COLUMNS
    assert len(frame) == len(dataset.records()) == 166
    assert Counter(zip(frame["fleet"], frame["kind"])) == {
        ("default", "provide"): 44, ("default", "retrieval"): 42, ("optprov", "provide"): 40, ("optprov", "retrieval"): 40}
    assert Counter(frame["outcome"]) == {"ok": 163, "error": 1, "not found": 2}
    assert frame["created_at"].is_monotonic_increasing
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame.attrs["source"] == f"the Parquet dataset {root}"
    failed = frame[frame["outcome"] == "error"].iloc[0]
    assert failed["error"] == dataset.PROVIDE_ERROR and failed["trace"] is None and pd.isna(failed["trace_rpc_total"])
    traced = frame[frame["trace"].notna()]
    assert (traced["trace_rpc_total"] == traced["trace"].map(lambda t: json.loads(t)["rpc_total"])).all()
    for column, key in (("trace_host_lag_ms", "host_lag_ms"), ("trace_path_bound_s", "path_bound_s")):
        assert str(frame[column].dtype) == "float64"
        expected = traced["trace"].map(lambda t: json.loads(t).get(key))  # missing or null: NaN
        pd.testing.assert_series_equal(traced[column], expected.astype("float64"), check_names=False)
    assert frame["trace_path_bound_s"].notna().sum() == 83 and frame["trace_host_lag_ms"].notna().sum() == 123


def test_filters_select_exactly(root):
    assert len(load.measurements(parquet_dir=root, rt_size_min=11)) == 166 - 3  # the cold node's provides
    assert len(load.measurements(parquet_dir=root, fleets="optprov", kinds="provide")) == 40
    assert len(load.measurements(parquet_dir=root, regions=["us-west-1"], fleets=["default"])) == 20 + 22
    week2 = load.measurements(parquet_dir=root, start="2024-03-11")
    assert len(week2) == 80 and week2["created_at"].min() >= pd.Timestamp("2024-03-11", tz="UTC")
    week1 = load.measurements(parquet_dir=root, end="2024-03-11")  # end is exclusive
    assert len(week1) == 166 - 80
    # the first provide of week 1 is at 06:00:00 and its retrieval at 06:00:30 (eu, both fleets)
    moment = load.measurements(parquet_dir=root, start="2024-03-04T06:00:00", end="2024-03-04T06:00:30")
    assert sorted(moment["kind"]) == ["provide", "provide"]
    last = load.measurements(parquet_dir=root, last="1d", end="2024-03-05")
    assert set(last["date"]) == {"2024-03-04"} and len(last) == len(load.measurements(
        parquet_dir=root, start="2024-03-04", end="2024-03-05"))


def test_partitions_outside_the_selection_are_never_opened(root, tmp_path):
    """Predicate push-down: a broken file in another kind/date partition does not matter
    unless the selection reaches it (and then it is one readable error)."""
    copy = tmp_path / "data"
    dataset.write(copy)
    broken = copy / "kind=provide" / "date=2024-03-17" / "part-zz-000000.parquet"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not parquet at all")
    (copy / "kind=retrieval" / "date=2024-03-04" / ".part-gen-9.parquet.tmp").write_bytes(b"half-written")
    assert len(load.measurements(parquet_dir=copy, kinds="retrieval")) == 82
    assert len(load.measurements(parquet_dir=copy, end="2024-03-17")) == 166 - 8  # 8 rows on the 17th
    with pytest.raises(DataError, match="^cannot read the Parquet dataset at .*part-zz-000000.parquet"):
        load.measurements(parquet_dir=copy)


def test_a_dataset_mixing_old_and_new_files(root, tmp_path):
    """Files written before the trace columns trace_host_lag_ms / trace_path_bound_s existed
    load beside new ones, in the same partitions: null there, values in the new files."""
    mixed = tmp_path / "mixed"
    records = dataset.records()
    week1 = [r for r in records if r.created_at < dataset.WEEKS[1]]
    week2 = [r for r in records if r.created_at >= dataset.WEEKS[1]]
    old_files = dataset.write_old_schema(mixed, week1[:60])
    assert all("trace_host_lag_ms" not in pq.read_schema(path).names for path in old_files)
    with ParquetSink(mixed, writer_id="new", rotate_rows=7, rotate_seconds=3600) as sink:
        sink.write(week1[60:] + week2)
    frame = load.measurements(parquet_dir=mixed)
    assert list(frame.columns) == load.COLUMNS and len(frame) == 166
    assert str(frame["trace_host_lag_ms"].dtype) == "float64" and str(frame["trace_path_bound_s"].dtype) == "float64"
    old_ids = {r.op_id for r in week1[:60]}
    is_old = frame["op_id"].isin(old_ids)
    assert frame.loc[is_old, ["trace_host_lag_ms", "trace_path_bound_s"]].isna().all().all()
    assert frame.loc[is_old & frame["trace"].notna(), "trace_rpc_total"].notna().all()  # the old columns still read
    reference = load.measurements(parquet_dir=root).set_index("op_id")
    new_rows = frame[~is_old].set_index("op_id")
    pd.testing.assert_series_equal(new_rows["trace_host_lag_ms"], reference.loc[new_rows.index, "trace_host_lag_ms"])
    # filters and the column-only read reach both kinds of file
    assert len(load.measurements(parquet_dir=mixed, end="2024-03-11", rt_size_min=51)) == 86 - 3
    summary = load.measurement_columns(["fleet", "outcome", "trace_host_lag_ms"], parquet_dir=mixed)
    assert len(summary) == 166 and summary["trace_host_lag_ms"].notna().sum() == \
        frame["trace_host_lag_ms"].notna().sum() > 0
    old_only = tmp_path / "old"
    dataset.write_old_schema(old_only)
    frame = load.measurements(parquet_dir=old_only)
    assert len(frame) == 166 and frame[["trace_host_lag_ms", "trace_path_bound_s"]].isna().all().all()


def test_measurement_columns_match_the_full_frame(root):
    names = ["fleet", "kind", "duration", "outcome", "error", "trace_host_lag_ms", "trace_path_bound_s", "round"]
    part = load.measurement_columns(names, parquet_dir=root, rt_size_min=51, fleets="default")
    full = load.measurements(parquet_dir=root, rt_size_min=51, fleets="default")[names]
    assert list(part.columns) == names and len(part) == len(full) == 83
    key = ["kind", "duration", "round"]
    pd.testing.assert_frame_equal(part.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True))


@pytest.mark.parametrize("params,message", [
    ({"fleets": "nope"}, "unknown fleet 'nope'; known: default, optprov, fullrt, pylibp2p, go, js"),
    ({"fleets": "default,fullrt"}, r"no measurements of fleet\(s\) fullrt in the Parquet dataset .* "
                                   r"\(fleets there: default, optprov\)"),
    ({"start": "2024-03-10", "end": "2024-03-09"}, "bad time window: start 2024-03-10 00:00 is not before end"),
    ({"start": "March 4th"}, "bad time window: start 'March 4th' is not an ISO date"),
    ({"last": "soon"}, "bad time window: last 'soon' is not a positive duration"),
    ({"last": "7d", "start": "2024-03-01"}, "bad time window: give start or last, not both"),
    ({"start": "2030-01-01"}, "no measurements in the Parquet dataset .* for this selection"),
    ({"rt_size_min": -1}, "rt_size filter must be >= 0"),
    ({"source": "mysql"}, "unknown source 'mysql'"),
])
def test_bad_input_is_one_line(root, params, message):
    params = {"parquet_dir": root, **params}
    with pytest.raises(DataError, match=message) as caught:
        load.measurements(**params)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=message):
        load.fleet_counts(**params)


def test_missing_and_empty_datasets(tmp_path):
    with pytest.raises(DataError, match=r"^no Parquet dataset at .*/absent: set parquet_dir in the notebook's "):
        load.measurements(parquet_dir=tmp_path / "absent")
    (tmp_path / "empty" / "kind=provide").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no measurements yet"):
        load.measurements(parquet_dir=tmp_path / "empty")


def test_fleet_counts_and_the_default_dataset(root, tmp_path, monkeypatch):
    assert load.fleet_counts(parquet_dir=root, rt_size_min=51) == {"default": 83, "optprov": 80}
    monkeypatch.setenv("PARSEC_SCHEDULER_PARQUET_DIR", str(root))
    assert load.default_parquet_dir() == root
    monkeypatch.setenv("PARSEC_PARQUET_DIR", str(tmp_path / "named"))  # the analysis' own setting wins
    assert load.default_parquet_dir() == tmp_path / "named"
    monkeypatch.delenv("PARSEC_PARQUET_DIR")
    monkeypatch.delenv("PARSEC_SCHEDULER_PARQUET_DIR")
    monkeypatch.chdir(tmp_path)
    checkout = Path(load.__file__).resolve().parents[2] / ".parsec" / "parquet"
    nothing_here = tmp_path / ".parsec" / "parquet"
    assert load.default_parquet_dir() == (checkout if checkout.is_dir() else nothing_here)


def test_a_kernel_in_the_notebooks_folder_finds_the_demo_dataset_above_it(tmp_path, monkeypatch):
    """Jupyter starts the kernel in the notebook's folder; the demo wrote to the repository's
    ``.parsec`` one level up."""
    for name in load.PARQUET_ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "repo" / ".parsec" / "parquet").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "notebooks")
    assert load.default_parquet_dir() == tmp_path / "repo" / ".parsec" / "parquet"
    assert load.demo_state_dirs()[:2] == [tmp_path / "repo" / "notebooks" / ".parsec", tmp_path / "repo" / ".parsec"]


def test_no_database_names_what_to_set(tmp_path, monkeypatch):
    for name in ("PARSEC_DATABASE_HOST",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(load, "demo_state_dirs", lambda cwd=None: [tmp_path / ".parsec"])
    with pytest.raises(DataError, match=r"^no database: set PARSEC_DATABASE_HOST .* source = \"parquet\" in the "
                                        r"notebook's parameters cell"):
        load.analysis_database()


def test_pick_fleet(root):
    frame = load.measurements(parquet_dir=root)
    assert load.pick_fleet(frame) == "default"
    assert load.pick_fleet(frame[frame["fleet"] == "optprov"]) == "optprov"
    with pytest.raises(DataError, match="no measurements of fleet 'fullrt'"):
        load.pick_fleet(frame, "fullrt")


def test_window_counts_back_from_end_or_now():
    now = datetime(2024, 3, 20, 12, tzinfo=timezone.utc)
    assert load.window(last="2w", now=now) == (datetime(2024, 3, 6, 12, tzinfo=timezone.utc), None)
    assert load.window(end="2024-03-10", last="36h") == (datetime(2024, 3, 8, 12, tzinfo=timezone.utc),
                                                       datetime(2024, 3, 10, tzinfo=timezone.utc))
    assert load.window(start="2024-03-04T12:00+02:00")[0] == datetime(2024, 3, 4, 10, tzinfo=timezone.utc)


def test_postgres_gives_the_same_frame_as_parquet(root, fresh_db):
    assert asyncio.run(dataset.write_postgres(fresh_db)) == 166
    for params in ({}, {"fleets": "default", "rt_size_min": 51}, {"start": "2024-03-11", "regions": "eu-central-1"}):
        from_db = load.measurements(source="postgres", database=fresh_db, **params)
        from_files = load.measurements(parquet_dir=root, **params)
        assert len(from_db) == len(from_files) > 0
        key = ["op_id"]
        a = from_db.sort_values(key).reset_index(drop=True)
        b = from_files.sort_values(key).reset_index(drop=True)
        for frame in (a, b):  # jsonb re-serialises: compare the documents
            frame["trace"] = frame["trace"].map(lambda t: None if t is None else json.loads(t))
        pd.testing.assert_frame_equal(a, b)
    assert load.fleet_counts(source="postgres", database=fresh_db) == {"default": 86, "optprov": 80}
    with pytest.raises(DataError, match=r"no measurements of fleet\(s\) fullrt in PostgreSQL"):
        load.measurements(source="postgres", database=fresh_db, fleets="fullrt")


def test_postgres_reads_rows_without_our_measurements_table_entry(fresh_db):
    """Rows a Go scheduler wrote (no `measurements` row): fleet and region from nodes_ecs."""
    async def go_rows():
        from parsec.store.db import connect_pool

        await dataset.write_postgres(fresh_db)
        pool = await connect_pool(fresh_db)
        try:
            await pool.execute("INSERT INTO retrievals_ecs (scheduler_id, node_id, rt_size, duration, cid, error,"
                               " created_at) VALUES (1, 2, 150, 0.5, 'QmGo', NULL, '2024-03-05T00:00:00Z')")
        finally:
            await pool.close()

    asyncio.run(go_rows())
    frame = load.measurements(source="postgres", database=fresh_db, start="2024-03-05", end="2024-03-05T00:00:01")
    row = frame.iloc[0]
    assert len(frame) == 1 and row["cid"] == "QmGo" and row["op_id"] is None and pd.isna(row["round"])
    assert (row["fleet"], row["region"], row["step"], row["outcome"]) == ("default", "us-west-1", "retrieval", "ok")


@pytest.mark.integration
def test_the_demo_database_is_started_for_a_kernel_below_it(monkeypatch):
    """No PARSEC_DATABASE_HOST: the demo's embedded PostgreSQL in ``.parsec/postgres`` above
    the kernel's folder is started (and said so), then reused."""
    import asyncio
    import shutil
    import tempfile

    from parsec.store.db import connect_pool
    from parsec.store.embedded import EmbeddedPostgres

    monkeypatch.delenv("PARSEC_DATABASE_HOST", raising=False)
    tmp_path = Path(tempfile.mkdtemp(prefix="parsec-demo-"))  # not tmp_path: the `postgres` user must reach it
    tmp_path.chmod(0o755)
    monkeypatch.setattr(load, "_embedded", {})
    demo = EmbeddedPostgres(tmp_path / ".parsec" / "postgres")
    demo.start()
    demo.stop()  # the demo ended: data kept, server stopped
    (tmp_path / "notebooks").mkdir()
    said = []
    settings = load.analysis_database(cwd=tmp_path / "notebooks", say=said.append)
    try:
        assert len(said) == 1 and str(tmp_path / ".parsec" / "postgres") in said[0]
        assert load.analysis_database(cwd=tmp_path / "notebooks", say=said.append) == settings and len(said) == 1

        async def one() -> int:
            pool = await connect_pool(settings)
            try:
                return await pool.fetchval("SELECT 1")
            finally:
                await pool.close()

        assert asyncio.run(one()) == 1
    finally:
        load._embedded.pop(tmp_path / ".parsec" / "postgres").stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
