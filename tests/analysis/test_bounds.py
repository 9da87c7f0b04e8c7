"""Duration against the path bound, and host-lag flags, on known input (`parsec.analysis.bounds`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from parsec.analysis import bounds, load
from parsec.analysis.load import DataError
from tests.analysis import dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return dataset.write(tmp_path_factory.mktemp("parquet"))


@pytest.fixture(scope="module")
def frame(root) -> pd.DataFrame:
    return load.measurements(parquet_dir=root, rt_size_min=51)


def test_path_bounds_per_fleet_and_kind(frame):
    table = bounds.path_bounds(frame).set_index(["fleet", "kind"])
    assert list(table.index) == [("default", "provide"), ("default", "retrieval"),
                                 ("optprov", "provide"), ("optprov", "retrieval")]
    provide, retrieval = table.loc[("default", "provide")], table.loc[("default", "retrieval")]
    # durations 1..20 (week 1) and 2..40 step 2 (week 2); bounds half the week-1 duration:
    # 0.5..10 step 0.5, twice; ratios 2 (20 times) and 4 (20 times): the median is 3
    assert provide["n"] == 40
    assert (provide["duration_p50"], provide["path_bound_p50"], provide["ratio_p50"]) == pytest.approx((14.0, 5.25, 3.0))
    assert retrieval["n"] == 40
    assert (retrieval["duration_p50"], retrieval["path_bound_p50"], retrieval["ratio_p50"]) == \
        pytest.approx((1.4, 0.525, 3.0))
    for kind in ("provide", "retrieval"):  # optprov: a null bound, or none at all
        row = table.loc[("optprov", kind)]
        assert row["n"] == 0 and math.isnan(row["duration_p50"]) and math.isnan(row["ratio_p50"])


def test_path_bounds_use_successes_with_a_positive_bound_and_the_median_ratio():
    frame = _frame([
        # fleet, kind, duration, outcome, lag, bound
        ("default", "provide", 2.0, "ok", None, 1.0),     # ratio 2
        ("default", "provide", 9.0, "ok", None, 1.0),     # ratio 9
        ("default", "provide", 30.0, "ok", None, 10.0),   # ratio 3
        ("default", "provide", 5.0, "ok", None, 0.0),     # zero bound: no ratio, left out
        ("default", "provide", 7.0, "ok", None, None),    # no bound: left out
        ("default", "provide", 60.0, "error", None, 1.0),  # failure: left out
    ])
    row = bounds.path_bounds(frame).iloc[0]
    assert row["n"] == 3
    assert (row["duration_p50"], row["path_bound_p50"], row["ratio_p50"]) == (9.0, 1.0, 3.0)
    assert row["ratio_p50"] != row["duration_p50"] / row["path_bound_p50"]  # median ratio, not ratio of medians


def test_host_lag_flags_per_fleet(frame):
    table = bounds.host_lag(frame).set_index("fleet")
    default, optprov = table.loc["default"], table.loc["optprov"]
    # default: 80 traced successes, lags 0, 6.25, …, 50, 56.25 ms eight times each; only 56.25 > 50
    assert (default["n"], default["n_flagged"], default["flagged_share"]) == (80, 8, 0.1)
    assert (default["lag_p50_ms"], default["lag_max_ms"]) == (28.125, 56.25)
    assert (optprov["n"], optprov["n_flagged"], optprov["flagged_share"]) == (40, 0, 0.0)  # retrievals: no lag
    assert table.attrs["threshold_ms"] == 50.0
    lower = bounds.host_lag(frame, 40.0).set_index("fleet")  # 43.75, 50 and 56.25 are above 40
    assert (lower.loc["default", "n_flagged"], lower.loc["default", "flagged_share"]) == (24, 0.3)
    assert bounds.host_lag(frame, 56.25).set_index("fleet").loc["default", "n_flagged"] == 0  # strictly above
    by_kind = bounds.host_lag(frame, by=["fleet", "kind"]).set_index(["fleet", "kind"])
    assert by_kind.loc[("default", "provide"), "n_flagged"] == 4
    assert by_kind.loc[("optprov", "retrieval"), "n"] == 0 and math.isnan(by_kind.loc[("optprov", "retrieval"),
                                                                                        "flagged_share"])
    assert bounds.flagged(frame).sum() == 8
    with pytest.raises(ValueError, match="above 0 ms"):
        bounds.host_lag(frame, 0)


def test_host_lag_counts_every_outcome_and_the_cold_node(root):
    everything = load.measurements(parquet_dir=root)  # the cold node's 3 provides: 500 ms
    row = bounds.host_lag(everything).set_index("fleet").loc["default"]
    assert (row["n"], row["n_flagged"]) == (83, 11)
    frame = _frame([("go", "provide", 1.0, "error", 80.0, None), ("go", "provide", 1.0, "ok", 10.0, None)])
    assert bounds.host_lag(frame).iloc[0][["n", "n_flagged"]].tolist() == [2, 1]


def test_summary_lines(frame):
    assert bounds.summary_lines(frame) == [
        "host lag > 50 ms: default 8/80 (10.0 %), optprov 0/40 (0.0 %)",
        "duration ÷ path bound, p50: default provide 3.00× (14 s vs 5.25 s, n=40), "
        "default retrieval 3.00× (1.4 s vs 0.525 s, n=40), optprov no bound recorded",
    ]
    assert bounds.summary_lines(frame, 40.0)[0] == "host lag > 40 ms: default 24/80 (30.0 %), optprov 0/40 (0.0 %)"
    retrievals = frame[frame["kind"] == "retrieval"]
    assert bounds.lag_line(retrievals) == "host lag > 50 ms: default 4/40 (10.0 %), optprov no lag recorded"


def test_nothing_recorded_is_said_not_failed(frame):
    without = frame.assign(trace_host_lag_ms=np.nan, trace_path_bound_s=np.nan)
    assert bounds.summary_lines(without) == ["host lag and path bound: no bound/lag recorded in this selection"]
    assert bounds.summary_lines(frame.iloc[0:0]) == ["host lag and path bound: no bound/lag recorded in this selection"]
    assert bounds.recorded(without) == (False, False)
    only_lag = frame[frame["fleet"] == "optprov"]
    assert bounds.recorded(only_lag) == (False, True)
    assert bounds.summary_lines(only_lag) == ["host lag > 50 ms: optprov 0/40 (0.0 %)",
                                              "duration ÷ path bound, p50: no bound recorded"]
    assert bounds.lag_line(without) == "host lag > 50 ms: no lag recorded"
    table = bounds.path_bounds(without)
    assert (table["n"] == 0).all() and len(table) == 4
    assert bounds.ratios(without).empty


def test_ratios_for_the_cdf(frame):
    ratios = bounds.ratios(frame)
    assert sorted(set(ratios["group"])) == ["default provide", "default retrieval"]
    assert sorted(ratios["duration"].round(9).unique()) == [2.0, 4.0]
    assert len(ratios) == 80


def test_threshold_setting(monkeypatch):
    monkeypatch.delenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", raising=False)
    assert bounds.threshold_ms() == 50.0
    assert bounds.threshold_ms("120ms") == 120.0 and bounds.threshold_ms("0.2") == 200.0
    monkeypatch.setenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", "75ms")
    assert bounds.threshold_ms() == 75.0
    assert bounds.threshold_ms("30ms") == 30.0  # the flag wins
    monkeypatch.setenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", "soon")
    with pytest.raises(DataError, match=r"^invalid setting: PARSEC_REPORT_HOST_LAG_THRESHOLD: .*not a duration") as caught:
        bounds.threshold_ms()
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=r"^invalid setting: --host-lag-threshold: Input should be greater than 0"):
        bounds.threshold_ms("0")


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["fleet", "kind", "duration", "outcome", bounds.LAG, bounds.BOUND]).astype(
        {bounds.LAG: "float64", bounds.BOUND: "float64"})
