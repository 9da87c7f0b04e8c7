"""Measurements as one DataFrame, from the Parquet dataset (default) or PostgreSQL.

Both loaders return the same columns and dtypes (``COLUMNS``), so the statistics, plots
and notebooks never care where the rows came from. The Parquet loader pushes every
predicate down into pyarrow's dataset scan: ``kind`` and ``date`` select hive partitions
(files of other kinds and days are never opened), ``created_at``, ``fleet``, ``region`` and
``rt_size`` are checked against each file's row-group statistics before rows are read.
The PostgreSQL loader reads the original tables (``provides_ecs``, ``retrievals_ecs``,
``nodes_ecs``) so rows written by a Go scheduler count too, with our ``measurements`` and
``traces`` joined where present (``Repository.fetch_for_analysis``).

Every problem a user can cause (no dataset, an empty one, an unknown fleet, a bad time
window) is a `DataError` whose message is one line.

Parquet files are read with today's schema: a file written before a column existed (the
trace columns ``trace_host_lag_ms`` and ``trace_path_bound_s`` were added later) reads as
null there, as PostgreSQL rows without those values do.
"""

from __future__ import annotations

import atexit
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from parsec.config import FLEETS, DatabaseSettings, parse_duration
from parsec.config import load as load_settings
from parsec.kad.constants import NOT_FOUND
from parsec.store.db import Repository, StoreError, connect_pool
from parsec.store.embedded import EmbeddedPostgres, run_coroutine
from parsec.store.parquet import FILE_SCHEMA, PARTITION_SCHEMA, TRACE_COLUMNS
from parsec.store.records import FIELDS

KINDS = ("provide", "retrieval")
COLUMNS = [*FIELDS, *TRACE_COLUMNS, "date", "outcome"]
INT_TRACE_COLUMNS = tuple(name for name, (_, kind) in TRACE_COLUMNS.items() if pa.types.is_integer(kind))
FLOAT_TRACE_COLUMNS = tuple(name for name in TRACE_COLUMNS if name not in INT_TRACE_COLUMNS)
OK, ERROR = "ok", "error"  # outcome labels; NOT_FOUND, the third, is the contract's error text itself
_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|w)\s*$")


class DataError(ValueError):
    """Bad input or no data: the message is one line, fit to show the user as it is."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for it in a notebook: the one line, no traceback."""
        return [f"DataError: {self}"]


@dataclass(frozen=True)
class Selection:
    """Which measurements to load. ``end`` is exclusive; None means unbounded."""

    start: datetime | None = None
    end: datetime | None = None
    fleets: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    kinds: tuple[str, ...] = KINDS
    rt_size_min: int = 0  # keep rows with rt_size >= this (the published plots: > 50)

    def describe(self) -> str:
        """The selection in words, for the methodology text under each plot."""
        parts = [f"{self.start:%Y-%m-%d %H:%M} UTC" if self.start else "the first measurement",
                 f"{self.end:%Y-%m-%d %H:%M} UTC" if self.end else "the last"]
        text = f"from {parts[0]} to {parts[1]}"
        if self.fleets:
            text += f"; fleet(s) {', '.join(self.fleets)}"
        if self.regions:
            text += f"; region(s) {', '.join(self.regions)}"
        return text + (f"; routing table ≥ {self.rt_size_min} peers" if self.rt_size_min else
                       "; no routing-table filter")


def parse_time(value: str | datetime | date | None, name: str) -> datetime | None:
    """An ISO date (midnight UTC) or datetime (UTC unless it says otherwise)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise DataError(f"bad time window: {name} {value!r} is not an ISO date or time "
                            "(e.g. 2024-03-04 or 2024-03-04T12:00)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_span(value: str) -> timedelta:
    """``7d``, ``2w``, or a Go duration (``36h``, ``90m``) as a timedelta."""
    match = _DAYS.match(str(value))
    if match:
        return timedelta(days=float(match.group(1)) * (7 if match.group(2) == "w" else 1))
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise DataError(f"bad time window: last {value!r} is not a positive duration (e.g. 7d, 2w, 36h)")
    return timedelta(seconds=seconds)


def window(start=None, end=None, last: str | None = None,
           now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """(start, end) from the user's words: ``last`` counts back from ``end``, else from now."""
    start, end = parse_time(start, "start"), parse_time(end, "end")
    if last:
        if start is not None:
            raise DataError("bad time window: give start or last, not both")
        end_of_span = end or now or datetime.now(timezone.utc)
        start = end_of_span - parse_span(last)
    if start is not None and end is not None and start >= end:
        raise DataError(f"bad time window: start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}")
    return start, end


def selection(*, start=None, end=None, last=None, fleets=None, regions=None, kinds=KINDS,
              rt_size_min: int | None = 0, now: datetime | None = None) -> Selection:
    """A checked Selection; fleets and regions may be one name, a comma list or a list."""
    begin, finish = window(start, end, last, now)
    fleet_list = _names(fleets)
    for fleet in fleet_list or ():
        if fleet not in FLEETS:
            raise DataError(f"unknown fleet {fleet!r}; known: {', '.join(FLEETS)}")
    kind_list = _names(kinds) or KINDS
    for kind in kind_list:
        if kind not in KINDS:
            raise DataError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if rt_size_min is not None and int(rt_size_min) < 0:
        raise DataError(f"rt_size filter must be >= 0, got {rt_size_min}")
    return Selection(begin, finish, fleet_list, _names(regions), kind_list, int(rt_size_min or 0))


def _names(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    return names or None


# ---------------------------------------------------------------- Parquet

def _parquet_filter(sel: Selection) -> ds.Expression:
    expr = ds.field("kind").isin(list(sel.kinds))
    stamp = FILE_SCHEMA.field("created_at").type
    if sel.start is not None:
        expr &= ds.field("date") >= sel.start.date().isoformat()
        expr &= ds.field("created_at") >= pa.scalar(sel.start, type=stamp)
    if sel.end is not None:
        expr &= ds.field("date") <= (sel.end - timedelta(microseconds=1)).date().isoformat()
        expr &= ds.field("created_at") < pa.scalar(sel.end, type=stamp)
    if sel.fleets:
        expr &= ds.field("fleet").isin(list(sel.fleets))
    if sel.regions:
        expr &= ds.field("region").isin(list(sel.regions))
    if sel.rt_size_min:
        expr &= ds.field("rt_size") >= sel.rt_size_min
    return expr


def _dataset(root: Path) -> ds.Dataset:
    if not root.is_dir():
        raise DataError(f"no Parquet dataset at {root}: set parquet_dir in the notebook's parameters cell, or "
                        f"PARSEC_PARQUET_DIR (`parsec report --parquet DIR`); `parsec demo` writes one")
    if not any(root.glob("kind=*/date=*/*.parquet")):
        raise DataError(f"the Parquet dataset at {root} holds no measurements yet")
    # hidden files (a writer's .part-….tmp) are skipped by discovery (ignore_prefixes)
    return ds.dataset(str(root), format="parquet", schema=pa.schema([*FILE_SCHEMA, *PARTITION_SCHEMA]),
                      partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"))


def _scan(dataset: ds.Dataset, expr: ds.Expression, columns: list[str] | None, root: Path) -> pa.Table:
    try:
        return dataset.to_table(filter=expr, columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"cannot read the Parquet dataset at {root}: {str(error).splitlines()[0]}") from None


def load_parquet(root: str | Path, sel: Selection = Selection()) -> pd.DataFrame:
    """The selected measurements of the dataset under ``root`` (possibly none)."""
    root = Path(root).expanduser()
    return normalise(_scan(_dataset(root), _parquet_filter(sel), None, root).to_pandas())


def parquet_columns(root: str | Path, names: list[str], sel: Selection = Selection()) -> pd.DataFrame:
    """Only the columns ``names`` of the selected measurements, reading nothing else."""
    root = Path(root).expanduser()
    return _scan(_dataset(root), _parquet_filter(sel), list(names), root).to_pandas()


def parquet_fleets(root: str | Path, sel: Selection = Selection()) -> Counter:
    """Selected measurements per fleet, reading nothing but the ``fleet`` column."""
    root = Path(root).expanduser()
    return Counter(_scan(_dataset(root), _parquet_filter(sel), ["fleet"], root).column("fleet").to_pylist())


# ---------------------------------------------------------------- PostgreSQL

async def _fetch_postgres(database: DatabaseSettings, sel: Selection) -> list[dict]:
    pool = await connect_pool(database, min_size=1, max_size=2)
    try:
        repo = Repository(pool)
        rows = []
        for kind in sel.kinds:
            rows += await repo.fetch_for_analysis(kind, start=sel.start, end=sel.end, fleets=sel.fleets,
                                                  regions=sel.regions, rt_size_min=sel.rt_size_min)
        return rows
    finally:
        await pool.close()


def load_postgres(database: DatabaseSettings, sel: Selection = Selection()) -> pd.DataFrame:
    """The selected measurements from the parsec tables of ``database`` (possibly none)."""
    try:
        rows = run_coroutine(_fetch_postgres(database, sel))  # works inside Jupyter's running loop too
    except StoreError as error:
        raise DataError(str(error)) from None
    return normalise(pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("date", "outcome")]))


# ---------------------------------------------------------------- shared

def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """One shape for every source: COLUMNS, fixed dtypes, ``date`` and ``outcome`` derived.

    ``outcome`` is ``ok`` (error empty), ``not found`` (the lookup ended without a
    provider) or ``error`` (anything else: timeouts, HTTP failures, cancellations).
    """
    frame = _typed(frame.copy(), [*FIELDS, *TRACE_COLUMNS])
    frame["date"] = _text(frame["created_at"].dt.strftime("%Y-%m-%d"))
    frame["outcome"] = _outcome(frame["error"])
    return frame[COLUMNS].sort_values(["created_at", "kind", "node_id"], kind="stable").reset_index(drop=True)


def _typed(frame: pd.DataFrame, names) -> pd.DataFrame:
    """The columns ``names`` of ``frame`` (changed in place) in COLUMNS' dtypes."""
    for name in names:
        if name in ("scheduler_id", "node_id", "rt_size"):
            frame[name] = frame[name].astype("int64")
        elif name in ("round", *INT_TRACE_COLUMNS):
            frame[name] = frame[name].astype("Int64")
        elif name == "duration":
            frame[name] = frame[name].astype("float64")
        elif name in FLOAT_TRACE_COLUMNS:  # NaN where the trace did not carry the value
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif name == "created_at":
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
        else:  # text: op_id, kind, fleet, region, cid, step, trace, error, date
            frame[name] = _text(frame[name], empty_is_none=name == "error")
    return frame


def _outcome(error: pd.Series) -> pd.Series:
    return _text(error.map(lambda e: OK if e is None else NOT_FOUND if e == NOT_FOUND else ERROR))


def _text(column: pd.Series, *, empty_is_none: bool = False) -> pd.Series:
    """Python str or None in an object column, whatever string dtype the source produced."""
    values = [value if isinstance(value, str) and (value or not empty_is_none) else None for value in column]
    return pd.Series(values, index=column.index, dtype=object)


class Source:
    """Where measurements come from, resolved once (``parquet`` or ``postgres``)."""

    def __init__(self, source: str = "parquet", parquet_dir: str | Path | None = None,
                 database: DatabaseSettings | None = None) -> None:
        self.kind = source
        if source == "parquet":
            self.root = Path(parquet_dir).expanduser() if parquet_dir else default_parquet_dir()
            self.where = f"the Parquet dataset {self.root}"
        elif source == "postgres":
            self.database = database or analysis_database()
            self.where = f"PostgreSQL {self.database.redacted()}"
        else:
            raise DataError(f"unknown source {source!r}; use parquet or postgres")

    def frame(self, sel: Selection) -> pd.DataFrame:
        return load_parquet(self.root, sel) if self.kind == "parquet" else load_postgres(self.database, sel)

    def columns(self, sel: Selection, names: list[str]) -> pd.DataFrame:
        """``names`` (of COLUMNS) of the selected measurements in COLUMNS' dtypes, unsorted;
        of a Parquet dataset nothing else is read (``outcome`` reads ``error``)."""
        if self.kind != "parquet":
            return self.frame(sel)[list(names)]
        read = list(dict.fromkeys("error" if name == "outcome" else name for name in names))
        frame = _typed(parquet_columns(self.root, read, sel), read)
        if "outcome" in names:
            frame["outcome"] = _outcome(frame["error"])
        return frame[list(names)]

    def fleets(self, sel: Selection) -> Counter:
        if self.kind == "parquet":
            return parquet_fleets(self.root, sel)
        return Counter(self.frame(sel)["fleet"])

    def require(self, counts: Counter, sel: Selection) -> None:
        """No data, or no data of a fleet asked for by name, is an error: a typo must not look
        like an empty week."""
        missing = [fleet for fleet in sel.fleets or () if not counts.get(fleet)]
        present = sorted(self.fleets(replace(sel, fleets=None))) if missing else []
        if present:
            raise DataError(f"no measurements of fleet(s) {', '.join(missing)} in {self.where} for this selection "
                            f"(fleets there: {', '.join(present)})")
        if not counts:
            raise DataError(f"no measurements in {self.where} for this selection ({sel.describe()})")


def measurements(*, source: str = "parquet", parquet_dir: str | Path | None = None,
                 database: DatabaseSettings | None = None, kinds=KINDS, **params) -> pd.DataFrame:
    """The notebooks' one call: checked parameters in, measurements out (never empty).

    ``params``: start, end, last, fleets, regions, rt_size_min (see `selection`).
    ``parquet_dir`` defaults to the scheduler's (``PARSEC_SCHEDULER_PARQUET_DIR``, else
    ``.parsec/parquet``, where ``parsec demo`` writes); ``database`` to ``PARSEC_DATABASE_*``.
    ``frame.attrs`` holds the source and the selection in words.
    """
    sel = selection(kinds=kinds, **params)
    src = Source(source, parquet_dir, database)
    frame = src.frame(sel)
    src.require(Counter(frame["fleet"]), sel)
    frame.attrs.update(selection=sel.describe(), source=src.where, rt_size_min=sel.rt_size_min)
    return frame


def measurement_columns(names, *, source: str = "parquet", parquet_dir: str | Path | None = None,
                        database: DatabaseSettings | None = None, kinds=KINDS, **params) -> pd.DataFrame:
    """Like `measurements`, but only the columns ``names`` (e.g. ``["fleet", "kind",
    "duration", "outcome", "trace_host_lag_ms"]``) — of a Parquet dataset nothing else is
    read — unsorted, and possibly empty (no check for missing data)."""
    sel = selection(kinds=kinds, **params)
    return Source(source, parquet_dir, database).columns(sel, list(names))


def fleet_counts(*, source: str = "parquet", parquet_dir: str | Path | None = None,
                 database: DatabaseSettings | None = None, kinds=KINDS, **params) -> Counter:
    """What `measurements` would load, counted per fleet, with the same errors — reading only
    the ``fleet`` column of a Parquet dataset (``parsec report`` checks its input with this
    before it starts a kernel)."""
    sel = selection(kinds=kinds, **params)
    src = Source(source, parquet_dir, database)
    counts = src.fleets(sel)
    src.require(counts, sel)
    return counts


PARQUET_ENV = ("PARSEC_PARQUET_DIR", "PARSEC_SCHEDULER_PARQUET_DIR")  # the first set wins


def demo_state_dirs(cwd: Path | None = None) -> list[Path]:
    """Where ``parsec demo`` may have left its state (``.parsec``: ``parquet/`` and
    ``postgres/``), nearest first: in the working directory and every folder above it (a
    Jupyter kernel starts in the notebook's own folder, ``notebooks/``), then in the checkout
    this package runs from (``scripts/demo.sh`` runs the demo there)."""
    here = (cwd or Path.cwd()).resolve()
    found = [folder / ".parsec" for folder in (here, *here.parents)]
    checkout = Path(__file__).resolve().parents[2] / ".parsec"
    return found if checkout in found else [*found, checkout]


def default_parquet_dir(cwd: Path | None = None) -> Path:
    """The dataset when none is named: ``PARSEC_PARQUET_DIR``, else the scheduler's
    ``PARSEC_SCHEDULER_PARQUET_DIR``, else the nearest demo dataset (``demo_state_dirs``),
    else ``.parsec/parquet`` in the working directory (absent: the loader says so)."""
    for name in PARQUET_ENV:
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    for state in demo_state_dirs(cwd):
        if (state / "parquet").is_dir():
            return state / "parquet"
    return (cwd or Path.cwd()).resolve() / ".parsec" / "parquet"


def database_from_env() -> DatabaseSettings:
    try:
        return load_settings(DatabaseSettings)
    except SystemExit as error:
        raise DataError(" ".join(str(error).split())) from None


_embedded: dict[Path, object] = {}  # demo databases this process started, stopped at exit


def demo_postgres(data_dir: Path):
    """The demo's embedded PostgreSQL in ``data_dir`` (an ``EmbeddedPostgres``, not started),
    or None when no cluster was ever created there."""
    if not (Path(data_dir) / "pgdata" / "PG_VERSION").exists():
        return None
    return EmbeddedPostgres(data_dir)


def analysis_database(cwd: Path | None = None, say=print) -> DatabaseSettings:
    """PostgreSQL for an analysis: ``PARSEC_DATABASE_*`` when a host is set, else the demo's
    embedded server (the nearest ``demo_state_dirs`` with one), started if needed — said in
    one line — and stopped when this process ends."""
    database = database_from_env()
    if database.host_given:
        return database
    for state in demo_state_dirs(cwd):
        data_dir = state / "postgres"
        if data_dir in _embedded:
            return _embedded[data_dir].settings
        server = demo_postgres(data_dir)
        if server is not None:
            try:
                settings = server.start()
            except Exception as error:
                raise DataError(" ".join(str(error).split())) from None
            _embedded[data_dir] = server
            atexit.register(server.stop)
            say(f"started the demo's embedded PostgreSQL in {data_dir} (stopped when this kernel ends)")
            return settings
    raise DataError("no database: set PARSEC_DATABASE_HOST (and _PORT, _USER, _PASSWORD, _NAME) in the kernel's "
                    "environment, or source = \"parquet\" in the notebook's parameters cell; no demo database "
                    "(.parsec/postgres) here, above, or in the checkout")


def pick_fleet(frame: pd.DataFrame, fleet: str | None = None) -> str:
    """The weekly report's fleet: the one asked for, else ``default`` when present, else the first."""
    present = sorted(set(frame["fleet"]))
    if fleet:
        if fleet not in present:
            raise DataError(f"no measurements of fleet {fleet!r} (fleets there: {', '.join(present)})")
        return fleet
    return "default" if "default" in present else present[0]
