"""Measured durations against the path bound, and operations timed under host lag.

Our engine's servers add two figures to each trace (Parquet/DataFrame columns
``trace_path_bound_s`` and ``trace_host_lag_ms``; ``traces.path_bound_s`` and
``traces.host_lag_ms`` in PostgreSQL):

- ``path_bound_s``: the latency model's lower bound for the path the operation took (the
  least time that path could take on the emulated network), on a latency-emulated testbed
  only. duration ÷ bound says how far an operation was from what the emulated wire
  allows: timeouts, slow peers, the strategy's waiting, and the measuring host itself.
- ``host_lag_ms``: the largest event-loop lag the process that timed the operation saw
  while it ran. Above a threshold (``parsec report --host-lag-threshold``,
  ``PARSEC_REPORT_HOST_LAG_THRESHOLD``, default 50 ms) the duration may be the host's
  rather than the network's: such operations are flagged and counted.

Other fleets (Go, js, py-libp2p) and older rows have neither; they count as "no bound/lag
recorded", never as zero. Quantiles interpolate like ``stats.quantiles`` (PostgreSQL's
``percentile_cont``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from parsec.analysis.load import DataError
from parsec.analysis.stats import quantiles, successes
from parsec.config import ReportSettings, load

LAG = "trace_host_lag_ms"
BOUND = "trace_path_bound_s"
DEFAULT_HOST_LAG_THRESHOLD_MS = 50.0
NO_BOUND, NO_LAG, NOTHING = "no bound recorded", "no lag recorded", "no bound/lag recorded"


def threshold_ms(value: str | float | None = None) -> float:
    """The host lag threshold in milliseconds: ``value`` (seconds or a Go duration, as the
    ``--host-lag-threshold`` flag takes it), else ``PARSEC_REPORT_HOST_LAG_THRESHOLD``, else
    50 ms. A bad value is a one-line `DataError` naming the flag or the variable."""
    try:
        settings = load(ReportSettings, host_lag_threshold=value)
    except SystemExit as error:
        text = " ".join(str(error).split()).removeprefix("invalid settings: ").removeprefix("invalid setting: ")
        if value is not None:  # the flag overrides the environment: name the flag
            text = text.replace("PARSEC_REPORT_HOST_LAG_THRESHOLD", "--host-lag-threshold")
        raise DataError(f"invalid setting: {text}") from None
    return round(settings.host_lag_threshold * 1000.0, 9)


def _groups(frame: pd.DataFrame, by: list[str]):
    """(key dict, rows) per group of ``by`` present in ``frame``, sorted."""
    for key, rows in frame.groupby(by, sort=True):
        yield dict(zip(by, key if isinstance(key, tuple) else (key,))), rows


def path_bounds(frame: pd.DataFrame, by=("fleet", "kind")) -> pd.DataFrame:
    """Per group of ``by`` (every group in ``frame``): ``n`` successful operations with a path
    bound above zero, and the p50 of their durations, of their bounds and of each
    operation's duration ÷ bound (the median ratio, not the ratio of medians). A group with
    no such operation has n 0 and NaN quantiles. Seconds; ``ratio_p50`` a factor (≥ 1 when
    the bound holds)."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, group in _groups(frame, by):
        ok = successes(group)
        bound = ok[BOUND].astype("float64")
        used = ok[bound > 0]  # NaN (none recorded) and a zero bound carry no ratio
        ratio = used["duration"].to_numpy(dtype=float) / used[BOUND].to_numpy(dtype=float)
        rows.append({**key, "n": len(used), "duration_p50": quantiles(used["duration"], (0.5,))["p50"],
                     "path_bound_p50": quantiles(used[BOUND], (0.5,))["p50"],
                     "ratio_p50": quantiles(ratio, (0.5,))["p50"]})
    return pd.DataFrame(rows, columns=[*by, "n", "duration_p50", "path_bound_p50", "ratio_p50"])


def host_lag(frame: pd.DataFrame, threshold_ms: float = DEFAULT_HOST_LAG_THRESHOLD_MS,
             by=("fleet",)) -> pd.DataFrame:
    """Per group of ``by`` (every group in ``frame``): ``n`` operations with a host lag
    recorded (every outcome: a failure timed under lag is as suspect), ``n_flagged`` of them
    above ``threshold_ms`` (strictly), ``flagged_share`` = n_flagged / n (NaN when n is 0),
    and the p50 and largest lag (ms)."""
    if not threshold_ms > 0:
        raise ValueError(f"the host lag threshold must be above 0 ms, got {threshold_ms}")
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, group in _groups(frame, by):
        lag = group[LAG].astype("float64").dropna()
        flagged = int((lag > threshold_ms).sum())
        rows.append({**key, "n": len(lag), "n_flagged": flagged,
                     "flagged_share": flagged / len(lag) if len(lag) else float("nan"),
                     "lag_p50_ms": quantiles(lag, (0.5,))["p50"],
                     "lag_max_ms": float(lag.max()) if len(lag) else float("nan")})
    table = pd.DataFrame(rows, columns=[*by, "n", "n_flagged", "flagged_share", "lag_p50_ms", "lag_max_ms"])
    table.attrs["threshold_ms"] = float(threshold_ms)
    return table


def flagged(frame: pd.DataFrame, threshold_ms: float = DEFAULT_HOST_LAG_THRESHOLD_MS) -> pd.Series:
    """True for each operation whose recorded host lag is above ``threshold_ms``."""
    return frame[LAG].astype("float64").gt(threshold_ms).fillna(False).astype(bool)


def recorded(frame: pd.DataFrame) -> tuple[bool, bool]:
    """(any path bound recorded, any host lag recorded) in ``frame``."""
    return bool(frame[BOUND].notna().any()), bool(frame[LAG].notna().any())


def _ms(value: float) -> str:
    return f"{value:g} ms"


def lag_line(frame: pd.DataFrame, threshold_ms: float = DEFAULT_HOST_LAG_THRESHOLD_MS) -> str:
    """``host lag > 50 ms: default 8/80 (10.0 %), go no lag recorded``: per fleet, the
    operations flagged out of those with a lag recorded."""
    head = f"host lag > {_ms(threshold_ms)}"
    table = host_lag(frame, threshold_ms, by=["fleet"])
    if not (table["n"] > 0).any():
        return f"{head}: {NO_LAG}"
    parts = [f"{row.fleet} {row.n_flagged}/{row.n} ({100 * row.flagged_share:.1f} %)" if row.n else
             f"{row.fleet} {NO_LAG}" for row in table.itertuples()]
    return f"{head}: " + ", ".join(parts)


def bound_line(frame: pd.DataFrame) -> str:
    """``duration ÷ path bound, p50: default provide 3.00× (12.1 s vs 4.0 s, n=40), …``."""
    head = "duration ÷ path bound, p50"
    table = path_bounds(frame, ["fleet", "kind"])
    if not (table["n"] > 0).any():
        return f"{head}: {NO_BOUND}"
    parts = []
    for fleet, rows in table.groupby("fleet", sort=True):
        shown = rows[rows["n"] > 0]
        if shown.empty:
            parts.append(f"{fleet} {NO_BOUND}")
        parts += [f"{fleet} {row.kind} {row.ratio_p50:.2f}× ({row.duration_p50:.3g} s vs {row.path_bound_p50:.3g} s, "
                  f"n={row.n})" for row in shown.itertuples()]
    return f"{head}: " + ", ".join(parts)


def summary_lines(frame: pd.DataFrame, threshold_ms: float = DEFAULT_HOST_LAG_THRESHOLD_MS) -> list[str]:
    """What ``parsec report`` prints: the flagged share per fleet, then duration against
    the path bound per fleet and kind; one line saying so when neither was recorded."""
    if frame.empty or recorded(frame) == (False, False):
        return [f"host lag and path bound: {NOTHING} in this selection"]
    return [lag_line(frame, threshold_ms), bound_line(frame)]


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Successful operations with a path bound above zero, as ``fleet``, ``kind``, ``group``
    (``"<fleet> <kind>"``) and ``duration`` = duration ÷ bound: what ``plots.cdf`` draws."""
    ok = successes(frame)
    used = ok[ok[BOUND].astype("float64") > 0]
    return pd.DataFrame({"fleet": used["fleet"], "kind": used["kind"],
                         "group": used["fleet"] + " " + used["kind"],
                         "duration": used["duration"].to_numpy(dtype=float) / used[BOUND].to_numpy(dtype=float)},
                        index=used.index).astype({"duration": np.float64})
