"""Plot functions: what each figure shows (legend, sample counts, public-network marks)."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from parsec.analysis import load, plots, published, stats
from tests.analysis import dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    return load.measurements(parquet_dir=dataset.write(tmp_path_factory.mktemp("parquet")), rt_size_min=51)


def _legend(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_cdf_legend_has_counts_and_quantiles_and_labels_public_figures(frame):
    ok = stats.successes(frame[(frame["kind"] == "retrieval") & (frame["fleet"] == "default")])
    marks = {"eu-central-1": [published.lookup("default", "retrieval", "p50", "eu-central-1")]}
    fig = plots.cdf(ok, "region", title="TTFPR", published_marks=marks)
    assert _legend(fig) == ["eu-central-1 (n=20, p50 0.75 s, p90 1.62 s)",
                            "us-west-1 (n=20, p50 2.10 s, p90 3.62 s)",
                            "quantiles, public network (ProbeLab, 2023)"]
    assert fig.axes[0].get_xscale() == "log"  # 0.1 s .. 4 s


def test_boxplot_ticks_carry_n_and_empty_input_says_so(frame, tmp_path):
    ok = stats.successes(frame[frame["kind"] == "provide"])
    fig = plots.boxplot(ok, "fleet", title="provide")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["default\nn=40", "optprov\nn=40"]
    empty = plots.boxplot(ok.iloc[0:0], "region", title="nothing")
    assert "no successful measurements" in empty.axes[0].texts[0].get_text()
    assert plots.save(empty, "empty", tmp_path).read_bytes().startswith(PNG)


def test_daily_boxplot_has_one_box_per_day(frame):
    ok = stats.successes(frame[(frame["kind"] == "provide") & (frame["fleet"] == "default")])
    labels = [t.get_text().split("\n")[0] for t in plots.daily_boxplot(ok, title="d").axes[0].get_xticklabels()]
    assert labels == sorted(ok["date"].unique()) and len(labels) == 14


def test_rates_and_speedups_and_rpcs(frame, tmp_path):
    rates = stats.rates(frame[frame["kind"] == "provide"], "fleet")
    fig = plots.rates(rates, "fleet", title="errors",
                      published_rates={"default": published.lookup("default", "provide", "error_rate")})
    assert sorted(_legend(fig)) == ["error", "error rate, public network (ProbeLab, 2023)", "not found"]
    assert [t.get_text() for t in fig.axes[0].texts] == ["n=41", "n=40"]
    table = stats.speedups(frame, n_boot=50)
    fig = plots.speedups(table, title="speed-up",
                         published_speedups={("provide", "optprov"): published.lookup("optprov", "provide", "speedup_p50")})
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([4.0, 1.0])
    assert _legend(fig) == ["p50 speed-up, public network (ProbeLab, 2023)"]
    assert "nothing to compare" in plots.speedups(table.iloc[0:0], title="x").axes[0].texts[0].get_text()
    rpcs = stats.rpc_counts(frame)
    fig = plots.rpc_counts(rpcs, ["FIND_NODE", "GET_PROVIDERS", "ADD_PROVIDER"], title="rpcs")
    assert len(fig.axes[0].patches) == 3 * len(rpcs)
    assert plots.show(fig, "rpcs", tmp_path).read_bytes().startswith(PNG)  # outside Jupyter: saved only


def test_published_numbers_in_one_place():
    table = published.table()
    assert {"fleet", "kind", "metric", "low", "high", "region", "period"} <= set(table.columns)
    assert published.describe(published.lookup("default", "provide", "p50")) == "7–10 s"
    assert published.describe(published.lookup("optprov", "provide", "p50")) == "0.87 s"
    assert published.describe(published.lookup("default", "provide", "error_rate")) == "0.25–0.53 %"
    assert published.describe(published.lookup("optprov", "provide", "speedup_p50")) == "23×"
    assert published.describe(None) == "–"
    eu = published.lookup("default", "retrieval", "p99", "eu-central-1")
    assert (eu.low, eu.period) == (0.72, "one week of March 2023")
