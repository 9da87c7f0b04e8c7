"""The numbers behind the plots: quantiles, CDFs, rates, weekly change, bootstrap speed-ups.

Quantiles are numpy's ``linear`` method, the same as PostgreSQL's ``percentile_cont`` (what
``parsec demo``'s summary prints), so a table here and a SQL query on the same rows agree.
Durations are summarised over successes only (as the published plots were); rates over
every measurement. Intervals are percentile bootstraps from a seeded generator (each sample
resampled with replacement on its own), so the same numbers give the same interval on every
run: ``bootstrap_quantile`` for one quantile, ``bootstrap_ratio`` for a speed-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from parsec.analysis.load import ERROR, NOT_FOUND, OK

QUANTILES = (0.5, 0.9, 0.99)
RPC_TYPES = ("FIND_NODE", "GET_PROVIDERS", "ADD_PROVIDER", "GET_VALUE", "PUT_VALUE", "PING")


def qname(q: float) -> str:
    """0.5 -> 'p50', 0.99 -> 'p99', 0.999 -> 'p99.9'."""
    return f"p{100 * q:g}"


def successes(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["outcome"] == OK]


def quantiles(values, qs=QUANTILES) -> dict[str, float]:
    """{'p50': …, 'p90': …} of ``values``; NaN for every quantile of no values."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {qname(q): float("nan") for q in qs}
    return {qname(q): float(v) for q, v in zip(qs, np.quantile(data, qs))}


def ecdf(values) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the share of values at or below each (i/n for the i-th)."""
    data = np.sort(np.asarray(values, dtype=float))
    return data, np.arange(1, data.size + 1) / max(data.size, 1)


def quantile_table(frame: pd.DataFrame, by, qs=QUANTILES) -> pd.DataFrame:
    """Per group of ``by``: n successes and their quantiles (rows: groups, sorted)."""
    by = [by] if isinstance(by, str) else list(by)
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,))), "n": len(group),
             **quantiles(group["duration"], qs)}
            for key, group in successes(frame).groupby(by, sort=True)]
    return pd.DataFrame(rows, columns=[*by, "n", *map(qname, qs)])


def rates(frame: pd.DataFrame, by) -> pd.DataFrame:
    """Per group: n measurements, how many ok / not found / errors, and the two rates."""
    by = [by] if isinstance(by, str) else list(by)
    counts = frame.groupby([*by, "outcome"]).size().unstack("outcome", fill_value=0)
    for outcome in (OK, NOT_FOUND, ERROR):
        if outcome not in counts:
            counts[outcome] = 0
    table = counts[[OK, NOT_FOUND, ERROR]].rename(columns={OK: "ok", NOT_FOUND: "not_found", ERROR: "errors"})
    table.insert(0, "n", table.sum(axis=1))
    table["error_rate"] = table["errors"] / table["n"]
    table["not_found_rate"] = table["not_found"] / table["n"]
    table.columns.name = None
    return table.reset_index()


def week_start(created_at: pd.Series) -> pd.Series:
    """The Monday (UTC) of each timestamp's ISO week, as a date string."""
    days = created_at.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    return (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")


def weekly(frame: pd.DataFrame, by=("kind",), qs=QUANTILES) -> pd.DataFrame:
    """Per group and ISO week: n and quantiles of successes, with the relative change
    (``p50_change`` = this week / previous week − 1) against the calendar week before;
    NaN when that week had no successes."""
    by = [by] if isinstance(by, str) else list(by)
    data = successes(frame).assign(week=lambda f: week_start(f["created_at"]))
    table = quantile_table(data, [*by, "week"], qs)
    names = list(map(qname, qs))
    previous = table[[*by, "week", *names]].copy()
    previous["week"] = (pd.to_datetime(previous["week"]) + pd.Timedelta(days=7)).dt.strftime("%Y-%m-%d")
    merged = table.merge(previous, on=[*by, "week"], how="left", suffixes=("", "_prev"))
    for name in names:
        merged[f"{name}_change"] = merged[name] / merged[f"{name}_prev"] - 1.0
    return merged.drop(columns=[f"{name}_prev" for name in names])


@dataclass(frozen=True)
class Interval:
    """``point`` = the q-quantile of a sample of ``n`` values, with a bootstrap confidence
    interval [``low``, ``high``] (all NaN for no values)."""

    point: float
    low: float
    high: float
    n: int


def _resampled_quantiles(rng: np.random.Generator, data: np.ndarray, q: float, size: int) -> np.ndarray:
    """The q-quantile of each of ``size`` resamples (with replacement, same size) of ``data``."""
    return np.quantile(data[rng.integers(0, data.size, (size, data.size))], q, axis=1)


def _percentile_interval(spread: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2
    low, high = np.quantile(spread, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_quantile(values, *, q: float = 0.5, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                       chunk: int = 200) -> Interval:
    """The q-quantile of ``values`` with a percentile bootstrap interval (``n_boot``
    resamples from a seeded generator, as ``bootstrap_ratio``)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    spread = np.concatenate([_resampled_quantiles(rng, data, q, min(chunk, n_boot - done))
                             for done in range(0, n_boot, chunk)])
    low, high = _percentile_interval(spread, level)
    return Interval(float(np.quantile(data, q)), low, high, int(data.size))


@dataclass(frozen=True)
class Ratio:
    """``point`` = quantile(baseline) / quantile(other), with a bootstrap confidence interval."""

    point: float
    low: float
    high: float
    n_baseline: int
    n_other: int


def bootstrap_ratio(baseline, other, *, q: float = 0.5, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95, chunk: int = 200) -> Ratio:
    """How many times larger ``baseline``'s q-quantile is than ``other``'s (a speed-up of
    ``other`` when these are durations), with a percentile bootstrap interval: each sample
    is resampled with replacement on its own, ``n_boot`` times, from a seeded generator."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    if a.size == 0 or b.size == 0:
        return Ratio(float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    ratios = []
    for done in range(0, n_boot, chunk):
        size = min(chunk, n_boot - done)
        qa = _resampled_quantiles(rng, a, q, size)
        qb = _resampled_quantiles(rng, b, q, size)
        ratios.append(qa / qb)
    low, high = _percentile_interval(np.concatenate(ratios), level)
    return Ratio(float(np.quantile(a, q) / np.quantile(b, q)), low, high, int(a.size), int(b.size))


def bootstrap_paired_ratio(numerator, denominator, *, q: float = 0.5, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95, chunk: int = 200) -> Ratio:
    """quantile(numerator) / quantile(denominator) of paired samples (element i of both
    belongs to one operation, e.g. its duration and its path bound), with a percentile
    bootstrap interval that resamples the pairs together."""
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if a.size != b.size:
        raise ValueError(f"paired samples differ in size: {a.size} and {b.size}")
    if a.size == 0:
        return Ratio(float("nan"), float("nan"), float("nan"), 0, 0)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    ratios = []
    for done in range(0, n_boot, chunk):
        picks = rng.integers(0, a.size, (min(chunk, n_boot - done), a.size))
        ratios.append(np.quantile(a[picks], q, axis=1) / np.quantile(b[picks], q, axis=1))
    low, high = _percentile_interval(np.concatenate(ratios), level)
    return Ratio(float(np.quantile(a, q) / np.quantile(b, q)), low, high, int(a.size), int(b.size))


def speedups(frame: pd.DataFrame, baseline: str = "default", *, q: float = 0.5, n_boot: int = 1000,
             seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per kind and fleet other than ``baseline``: quantile(baseline) / quantile(fleet) of
    successful durations with its bootstrap interval (> 1: the fleet is faster)."""
    ok = successes(frame)
    rows = []
    name = qname(q)
    for kind in sorted(ok["kind"].unique()):
        of_kind = ok[ok["kind"] == kind]
        base = of_kind.loc[of_kind["fleet"] == baseline, "duration"]
        for fleet in sorted(set(of_kind["fleet"]) - {baseline}):
            other = of_kind.loc[of_kind["fleet"] == fleet, "duration"]
            ratio = bootstrap_ratio(base, other, q=q, n_boot=n_boot, seed=seed, level=level)
            rows.append({"kind": kind, "fleet": fleet, "baseline": baseline, "n_baseline": ratio.n_baseline,
                         "n": ratio.n_other, f"baseline_{name}": quantiles(base, (q,))[name],
                         name: quantiles(other, (q,))[name], "speedup": ratio.point,
                         "ci_low": ratio.low, "ci_high": ratio.high})
    columns = ["kind", "fleet", "baseline", "n_baseline", "n", f"baseline_{name}", name, "speedup", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def _rpcs(trace: str | None) -> dict[str, int]:
    if not trace:
        return {}
    try:
        rpcs = json.loads(trace).get("rpcs") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): int(v) for k, v in rpcs.items() if isinstance(v, (int, float))}


def rpc_counts(frame: pd.DataFrame, by=("fleet", "kind")) -> pd.DataFrame:
    """Per group: how many measurements carried a trace, and the mean RPCs per operation by
    message type (FIND_NODE, GET_PROVIDERS, ADD_PROVIDER, …), in total, hops and peers contacted."""
    by = [by] if isinstance(by, str) else list(by)
    traced = frame[frame["trace"].notna()]
    per_op = pd.DataFrame([_rpcs(t) for t in traced["trace"]], index=traced.index).fillna(0)
    types = [t for t in RPC_TYPES if t in per_op] + sorted(set(per_op) - set(RPC_TYPES))
    data = pd.concat([traced[by], per_op[types],
                      traced[["trace_rpc_total", "trace_hops", "trace_peers_contacted"]].astype("float64")], axis=1)
    table = data.groupby(by, sort=True).agg(
        traced=(by[0], "size"), **{t: (t, "mean") for t in types},
        rpc_total=("trace_rpc_total", "mean"), hops=("trace_hops", "mean"),
        peers_contacted=("trace_peers_contacted", "mean"))
    return table.reset_index()
