"""Numbers from a measurement dataset, simulated or real: the same DataFrame either way.

The functions take what ``parsec.store.parquet.read_dataset`` returns (one row per
measurement: ``kind``, ``fleet``, ``region``, ``duration``, ``error``, ``rt_size``, …), so
the CLI's closing table and ``bench/calibrate.py`` read a simulated run exactly as a
notebook reads a real one. Percentiles interpolate linearly (PostgreSQL's
``percentile_cont``, as ``Repository.fleet_summary`` queries them) over successful
measurements.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from parsec.kad.constants import NOT_FOUND
from parsec.store.records import MeasurementRecord


def records_frame(records: Iterable[MeasurementRecord]) -> pd.DataFrame:
    """Records as the DataFrame ``read_dataset`` would give for them (without ``date``)."""
    return pd.DataFrame([record.as_dict() for record in records])


def percentile(values: Iterable[float], q: float) -> float | None:
    array = np.asarray(list(values), dtype=float)
    return float(np.percentile(array, q * 100)) if array.size else None


def successes(frame: pd.DataFrame, kind: str, *, fleet: str | None = None, min_rt_size: int = 0) -> pd.DataFrame:
    """Successful measurements of ``kind`` (optionally one fleet; published plots also kept
    only ``rt_size > 50``)."""
    rows = frame[(frame["kind"] == kind) & frame["error"].isna() & (frame["rt_size"] > min_rt_size)]
    return rows if fleet is None else rows[rows["fleet"] == fleet]


def fleet_summary(frame: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """``{fleet: {"provides": {...}, "retrievals": {...}}}`` in the shape of
    ``parsec.store.db.Repository.fleet_summary``, for ``parsec.analysis.summary.format_summary``."""
    out: dict[str, dict[str, dict]] = {}
    for fleet in sorted(frame["fleet"].unique()) if len(frame) else []:
        for label, kind in (("provides", "provide"), ("retrievals", "retrieval")):
            rows = frame[(frame["fleet"] == fleet) & (frame["kind"] == kind)]
            ok = rows[rows["error"].isna()]["duration"]
            out.setdefault(fleet, {})[label] = {
                "n": len(rows), "p50": percentile(ok, 0.5), "p90": percentile(ok, 0.9),
                "errors": int((rows["error"].notna() & (rows["error"] != NOT_FOUND)).sum()),
                "not_found": int((rows["error"] == NOT_FOUND).sum()),
            }
    return out


def by_region(frame: pd.DataFrame, kind: str, fleet: str, q: float = 0.5,
              min_rt_size: int = 0) -> dict[str, float | None]:
    """The ``q`` quantile of successful ``kind`` durations per region of ``fleet``."""
    rows = successes(frame, kind, fleet=fleet, min_rt_size=min_rt_size)
    return {region: percentile(group["duration"], q) for region, group in rows.groupby("region")}
