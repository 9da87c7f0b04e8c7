"""Statistics on known input: exact quantiles, rates, weekly change, speed-ups, RPC counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from parsec.analysis import load, stats
from tests.analysis import dataset


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    return load.measurements(parquet_dir=dataset.write(tmp_path_factory.mktemp("parquet")), rt_size_min=51)


@pytest.fixture(scope="module")
def default(frame) -> pd.DataFrame:
    return frame[frame["fleet"] == "default"]


def test_quantiles_interpolate_like_percentile_cont():
    # 1..20: position q*(n-1) between neighbours, as PostgreSQL's percentile_cont
    assert stats.quantiles(range(1, 21)) == pytest.approx({"p50": 10.5, "p90": 18.1, "p99": 19.81})
    assert all(math.isnan(v) for v in stats.quantiles([]).values())
    assert stats.qname(0.999) == "p99.9"


def test_ecdf():
    x, y = stats.ecdf([3.0, 1.0, 2.0, 2.0])
    assert list(x) == [1.0, 2.0, 2.0, 3.0] and list(y) == [0.25, 0.5, 0.75, 1.0]


def test_weekly_table_with_change_against_the_previous_week(default):
    table = stats.weekly(default).set_index(["kind", "week"])
    assert list(table.index) == [("provide", "2024-03-04"), ("provide", "2024-03-11"),
                                 ("retrieval", "2024-03-04"), ("retrieval", "2024-03-11")]
    assert list(table["n"]) == [20, 20, 20, 20]
    week1, week2 = table.loc[("provide", "2024-03-04")], table.loc[("provide", "2024-03-11")]
    assert (week1["p50"], week1["p90"], week1["p99"]) == pytest.approx((10.5, 18.1, 19.81))
    assert (week2["p50"], week2["p90"], week2["p99"]) == pytest.approx((21.0, 36.2, 39.62))
    assert (week2["p50_change"], week2["p90_change"], week2["p99_change"]) == pytest.approx((1.0, 1.0, 1.0))
    assert math.isnan(week1["p50_change"])
    retrieval = table.loc[("retrieval", "2024-03-04")]
    assert (retrieval["p50"], retrieval["p90"], retrieval["p99"]) == pytest.approx((1.05, 1.81, 1.981))


def test_weekly_change_needs_the_calendar_week_before(default):
    gap = default[default["created_at"] >= pd.Timestamp("2024-03-11", tz="UTC")].copy()
    gap["created_at"] += pd.Timedelta(days=14)  # week 2 moved to 2024-03-25: 03-18 is empty
    table = stats.weekly(pd.concat([default[default["created_at"] < pd.Timestamp("2024-03-11", tz="UTC")], gap]))
    assert list(table.loc[table["kind"] == "provide", "week"]) == ["2024-03-04", "2024-03-25"]
    assert table["p50_change"].isna().all()


def test_week_starts_on_monday_utc():
    stamps = pd.Series(pd.to_datetime(["2024-03-10T23:59:59Z", "2024-03-11T00:00:00Z", "2024-03-11T01:00+02:00"], utc=True, format="ISO8601"))
    assert list(stats.week_start(stamps)) == ["2024-03-04", "2024-03-11", "2024-03-04"]


def test_rates_count_every_measurement(default):
    table = stats.rates(default, ["kind", "region"]).set_index(["kind", "region"])
    eu, us = table.loc[("provide", "eu-central-1")], table.loc[("retrieval", "us-west-1")]
    assert (eu["n"], eu["ok"], eu["errors"], eu["not_found"]) == (21, 20, 1, 0)
    assert eu["error_rate"] == pytest.approx(1 / 21)
    assert (us["n"], us["ok"], us["not_found"], us["errors"]) == (22, 20, 2, 0)
    assert us["not_found_rate"] == pytest.approx(2 / 22) and us["error_rate"] == 0
    assert table.loc[("retrieval", "eu-central-1"), "n"] == 20


def test_quantile_table_uses_successes_only(default):
    table = stats.quantile_table(default, ["kind", "region"]).set_index(["kind", "region"])
    eu = table.loc[("provide", "eu-central-1")]  # 1..10 and 2..20 step 2; the 180 s error left out
    assert eu["n"] == 20 and eu["p50"] == pytest.approx(np.quantile(list(range(1, 11)) + list(range(2, 21, 2)), 0.5))


def test_speedups_are_exact_with_a_bootstrap_interval(frame):
    table = stats.speedups(frame, "default", n_boot=400, seed=1).set_index(["kind", "fleet"])
    provide, retrieval = table.loc[("provide", "optprov")], table.loc[("retrieval", "optprov")]
    assert provide["speedup"] == pytest.approx(4.0)  # optprov provides take a quarter
    assert retrieval["speedup"] == pytest.approx(1.0)
    assert (provide["n"], provide["n_baseline"]) == (40, 40)
    assert provide["baseline_p50"] == pytest.approx(4 * provide["p50"])
    for row in (provide, retrieval):
        assert row["ci_low"] < row["speedup"] < row["ci_high"]


def test_bootstrap_is_seeded_and_degenerates_on_constants():
    rng = np.random.default_rng(7)
    a, b = rng.exponential(10, 50), rng.exponential(2, 50)
    first = stats.bootstrap_ratio(a, b, n_boot=300, seed=3)
    assert first == stats.bootstrap_ratio(a, b, n_boot=300, seed=3)
    assert first != stats.bootstrap_ratio(a, b, n_boot=300, seed=4)
    assert first.point == pytest.approx(np.median(a) / np.median(b))
    wide = stats.bootstrap_ratio(a[:8], b[:8], n_boot=300, seed=3)
    assert wide.high - wide.low > first.high - first.low  # fewer samples, wider interval
    constant = stats.bootstrap_ratio([6.0] * 5, [2.0] * 7, n_boot=50)
    assert (constant.point, constant.low, constant.high, constant.n_baseline, constant.n_other) == (3.0, 3.0, 3.0, 5, 7)
    assert math.isnan(stats.bootstrap_ratio([], [1.0]).point)
    with pytest.raises(ValueError):
        stats.bootstrap_ratio([1.0], [1.0], n_boot=0)


def test_speedups_without_a_second_fleet_is_an_empty_table(default):
    assert stats.speedups(default, "default", n_boot=10).empty


def test_rpc_counts_from_traces(frame):
    table = stats.rpc_counts(frame).set_index(["fleet", "kind"])
    default, optprov = table.loc[("default", "provide")], table.loc[("optprov", "provide")]
    assert default["traced"] == 40  # the failed provide carried no trace
    assert (default["FIND_NODE"], default["ADD_PROVIDER"], default["rpc_total"], default["hops"]) == (30, 20, 50, 3)
    assert (optprov["FIND_NODE"], optprov["ADD_PROVIDER"], optprov["rpc_total"], optprov["hops"]) == (10, 20, 30, 2)
    retrieval = table.loc[("default", "retrieval")]
    assert (retrieval["GET_PROVIDERS"], retrieval["FIND_NODE"], retrieval["peers_contacted"]) == (4, 0, 4)
    assert list(table.columns[:4]) == ["traced", "FIND_NODE", "GET_PROVIDERS", "ADD_PROVIDER"]


def test_a_paired_ratio_resamples_operations_not_samples() -> None:
    from parsec.analysis.stats import bootstrap_paired_ratio

    bound = np.linspace(0.1, 1.0, 40)
    measured = bound * 1.1  # every operation took 10 % more than its bound
    paired = bootstrap_paired_ratio(measured, bound, n_boot=500)
    assert paired.point == pytest.approx(1.1)
    assert paired.low == pytest.approx(1.1) and paired.high == pytest.approx(1.1)  # no spread: pairs move together
    with pytest.raises(ValueError, match="paired"):
        bootstrap_paired_ratio(measured, bound[:-1])
