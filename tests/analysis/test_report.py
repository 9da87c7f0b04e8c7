"""`parsec report`: both notebooks executed end to end on known data, every figure and table
checked; bad input refused in one line before a kernel starts."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from parsec.analysis import report
from parsec.analysis.load import DataError
from parsec.cli import report as report_command
from parsec.cli import main
from tests.analysis import dataset

FIGURES = {
    "weekly_report": {"provide_cdf_by_region", "ttfpr_cdf_by_region", "provide_boxplot_by_region",
                      "ttfpr_boxplot_by_region", "provide_daily_boxplot", "ttfpr_daily_boxplot",
                      "provide_rates_by_region", "retrieval_rates_by_region"},
    "fleet_comparison": {"provide_cdf_by_fleet", "ttfpr_cdf_by_fleet", "speedup", "provide_rates_by_fleet",
                         "retrieval_rates_by_fleet", "rpc_counts", "path_bound_ratio_cdf"},
}
TABLES = {
    "weekly_report": {"weekly", "weekly_by_region", "provide_rates_by_region", "retrieval_rates_by_region",
                      "ttfpr_by_region", "provide_by_region"},
    "fleet_comparison": {"quantiles_by_fleet", "speedup", "rates_by_fleet", "rpc_counts", "published",
                         "path_bounds", "host_lag"},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return dataset.write(tmp_path_factory.mktemp("parquet"))


@pytest.fixture(scope="module")
def run(root, tmp_path_factory) -> tuple[Path, str]:
    """Both notebooks on the generated dataset: the output folder and what was printed."""
    out = tmp_path_factory.mktemp("report")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["report", "--parquet", str(root), "--out", str(out), "--rt-size-min", "51", "--bootstrap", "200"])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def out(run) -> Path:
    return run[0]


def _csv(out: Path, notebook: str, name: str) -> pd.DataFrame:
    return pd.read_csv(out / notebook / f"{name}.csv")


@pytest.mark.parametrize("notebook", sorted(FIGURES))
def test_every_figure_and_table_is_written(out, notebook):
    assert {p.stem for p in (out / notebook).glob("*.png")} == FIGURES[notebook]
    assert {p.stem for p in (out / notebook).glob("*.csv")} == TABLES[notebook]
    for png in (out / notebook).glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    executed = nbformat.read(out / f"{notebook}.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURES[notebook])


@pytest.mark.parametrize("notebook", sorted(FIGURES))
def test_html_is_self_contained(out, notebook):
    html = (out / f"{notebook}.html").read_text()
    assert not re.search(r"<script[^>]+src=", html) and not re.search(r"<link[^>]+href=\"https?:", html)
    assert html.count('src="data:image/png;base64,') == len(FIGURES[notebook])
    assert "Methodology" in html and "public network (ProbeLab, 2023)" in html
    assert "plots.show(" not in html  # code hidden unless --show-code


def test_weekly_report_numbers(out):
    weekly = _csv(out, "weekly_report", "weekly").set_index(["kind", "week"])
    assert list(weekly["n"]) == [20, 20, 20, 20]
    assert tuple(weekly.loc[("provide", "2024-03-04"), ["p50", "p90", "p99"]]) == pytest.approx((10.5, 18.1, 19.81))
    assert tuple(weekly.loc[("provide", "2024-03-11"), ["p50", "p90", "p99"]]) == pytest.approx((21.0, 36.2, 39.62))
    assert tuple(weekly.loc[("retrieval", "2024-03-11"), ["p50_change", "p90_change", "p99_change"]]) == \
        pytest.approx((1.0, 1.0, 1.0))
    assert weekly.loc[("provide", "2024-03-04"), "p50_change"] != weekly.loc[("provide", "2024-03-04"), "p50_change"]
    rates = _csv(out, "weekly_report", "retrieval_rates_by_region").set_index("region")
    assert rates.loc["us-west-1", "not_found"] == 2 and rates.loc["us-west-1", "not_found_rate"] == pytest.approx(2 / 22)
    provide_rates = _csv(out, "weekly_report", "provide_rates_by_region").set_index("region")
    assert provide_rates.loc["eu-central-1", "error_rate"] == pytest.approx(1 / 21)  # cold rows filtered out
    ttfpr = _csv(out, "weekly_report", "ttfpr_by_region").set_index("region")
    assert ttfpr.loc["eu-central-1", "p50"] == pytest.approx(0.75)
    assert tuple(ttfpr.loc["eu-central-1", ["public_p50", "public_p90", "public_p99"]]) == (0.15, 0.44, 0.72)
    assert tuple(ttfpr.loc["us-west-1", ["public_p50", "public_p90", "public_p99"]]) == (0.32, 0.60, 0.86)


def test_fleet_comparison_numbers(out):
    speedup = _csv(out, "fleet_comparison", "speedup").set_index(["kind", "fleet"])
    provide = speedup.loc[("provide", "optprov")]
    assert provide["speedup"] == pytest.approx(4.0) and provide["ci_low"] < 4.0 < provide["ci_high"]
    assert provide["public_speedup_p50"] == "23×"
    assert speedup.loc[("retrieval", "optprov"), "speedup"] == pytest.approx(1.0)
    rpcs = _csv(out, "fleet_comparison", "rpc_counts").set_index(["fleet", "kind"])
    assert tuple(rpcs.loc[("optprov", "provide"), ["FIND_NODE", "ADD_PROVIDER", "rpc_total"]]) == (10, 20, 30)
    rates = _csv(out, "fleet_comparison", "rates_by_fleet").set_index(["kind", "fleet"])
    assert (rates.loc[("provide", "default"), "n"], rates.loc[("provide", "default"), "errors"]) == (41, 1)
    quantiles = _csv(out, "fleet_comparison", "quantiles_by_fleet").set_index(["fleet", "kind"])
    assert quantiles.loc[("default", "provide"), "public_p50"] == "7–10 s"
    assert quantiles.loc[("optprov", "provide"), "p50"] == pytest.approx(3.5)


def test_path_bound_and_host_lag_numbers(run):
    out, printed = run
    bound = _csv(out, "fleet_comparison", "path_bounds").set_index(["fleet", "kind"])
    provide = bound.loc[("default", "provide")]
    assert provide["n"] == 40
    assert tuple(provide[["duration_p50", "path_bound_p50", "ratio_p50"]]) == pytest.approx((14.0, 5.25, 3.0))
    assert bound.loc[("default", "retrieval"), "ratio_p50"] == pytest.approx(3.0)
    assert bound.loc[("optprov", "provide"), "n"] == 0 and pd.isna(bound.loc[("optprov", "provide"), "ratio_p50"])
    lag = _csv(out, "fleet_comparison", "host_lag").set_index("fleet")
    assert tuple(lag.loc["default", ["n", "n_flagged", "flagged_share"]]) == (80, 8, 0.1)
    assert tuple(lag.loc["optprov", ["n", "n_flagged", "flagged_share"]]) == (40, 0, 0.0)
    html = (out / "fleet_comparison.html").read_text()
    assert "host lag &gt; 50 ms: default 8/80 (10.0 %), optprov 0/40 (0.0 %)" in html
    # the closing lines of the command, after the reports
    lines = [line.split("] ", 1)[1] for line in printed.splitlines() if "] " in line]
    assert lines[-2:] == [
        "host lag > 50 ms: default 8/80 (10.0 %), optprov 0/40 (0.0 %)",
        "duration ÷ path bound, p50: default provide 3.00× (14 s vs 5.25 s, n=40), "
        "default retrieval 3.00× (1.4 s vs 0.525 s, n=40), optprov no bound recorded",
    ]


def test_a_dataset_without_bound_or_lag_says_so(tmp_path, monkeypatch):
    """Files from before the two trace columns (or another fleet's traces): the comparison
    runs, its tables have n 0, and the command says "no bound/lag recorded"."""
    root = tmp_path / "old"
    dataset.write_old_schema(root)
    monkeypatch.setenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", "20ms")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["report", "--notebook", "fleets", "--parquet", str(root), "--out", str(tmp_path / "out"),
                     "--bootstrap", "20"])
    assert code == 0, printed.getvalue()
    assert printed.getvalue().rstrip().endswith("host lag and path bound: no bound/lag recorded in this selection")
    report_dir = tmp_path / "out" / "fleet_comparison"
    assert {p.stem for p in report_dir.glob("*.png")} == FIGURES["fleet_comparison"]  # the CDF says "no path bound"
    assert (pd.read_csv(report_dir / "path_bounds.csv")["n"] == 0).all()
    assert (pd.read_csv(report_dir / "host_lag.csv")["n"] == 0).all()
    html = (tmp_path / "out" / "fleet_comparison.html").read_text()
    assert "no bound/lag recorded in this selection" in html


def test_the_threshold_flag_and_its_variable(root, monkeypatch):
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    monkeypatch.delenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", raising=False)
    args = parser.parse_args(["--parquet", str(root), "--rt-size-min", "51"])
    assert report_command.selection_values(args, None, None)["host_lag_threshold_ms"] == 50.0
    monkeypatch.setenv("PARSEC_REPORT_HOST_LAG_THRESHOLD", "45ms")
    values = report_command.selection_values(args, None, None)
    assert values["host_lag_threshold_ms"] == 45.0
    assert report_command.summary(values, None)[0] == "host lag > 45 ms: default 16/80 (20.0 %), optprov 0/40 (0.0 %)"
    args = parser.parse_args(["--parquet", str(root), "--rt-size-min", "51", "--host-lag-threshold", "0.04"])
    values = report_command.selection_values(args, None, None)  # the flag wins over the variable
    assert values["host_lag_threshold_ms"] == 40.0
    assert report_command.summary(values, None)[0] == "host lag > 40 ms: default 24/80 (30.0 %), optprov 0/40 (0.0 %)"
    nb = nbformat.read(report.notebook_path("fleets"), as_version=4)
    assert report_command.parameters(args, report.notebook_path("fleets"), Path("out"), None, None)[
        "host_lag_threshold_ms"] == 40.0
    assert "host_lag_threshold_ms" in report.parameter_names(nb)
    assert "--host-lag-threshold" in parser.format_help() and "PARSEC_REPORT_HOST_LAG_THRESHOLD" in parser.format_help()


def test_postgres_source_gives_the_same_weekly_table(out, fresh_db, tmp_path, monkeypatch):
    import asyncio

    asyncio.run(dataset.write_postgres(fresh_db))
    for key, value in fresh_db.model_dump().items():
        monkeypatch.setenv(f"PARSEC_DATABASE_{key.upper()}", str(value))
    code = main(["report", "--source", "postgres", "--notebook", "weekly", "--out", str(tmp_path),
                 "--rt-size-min", "51"])
    assert code == 0
    pd.testing.assert_frame_equal(_csv(tmp_path, "weekly_report", "weekly"), _csv(out, "weekly_report", "weekly"))


@pytest.mark.parametrize("argv,message", [
    (["--parquet", "{missing}"], "no Parquet dataset at .*missing"),
    (["--fleet", "nope"], "unknown fleet 'nope'"),
    (["--fleets", "default,fullrt"], r"no measurements of fleet\(s\) fullrt"),
    (["--start", "2024-03-12", "--end", "2024-03-11"], "bad time window"),
    (["--last", "a while"], "bad time window"),
    (["--notebook", "monthly"], "no notebook 'monthly'"),
    (["--bootstrap", "0"], "--bootstrap must be at least 1"),
    (["--baseline", "classic"], "unknown baseline fleet 'classic'"),
    (["--host-lag-threshold", "0"], "invalid setting: --host-lag-threshold: Input should be greater than 0"),
    (["--host-lag-threshold", "soon"], "invalid setting: --host-lag-threshold: .*not a duration"),
])
def test_bad_input_is_one_line_and_exit_2(root, tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    if "--parquet" not in argv:
        argv += ["--parquet", str(root)]
    assert main(["report", "--out", str(tmp_path / "out"), *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and re.match(f"parsec report: .*{message}", lines[0]), captured.err
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_failing_cell_is_one_line_and_the_notebook_is_kept(root, tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("divisor = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("1 / divisor"),
    ])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    args = argparse.Namespace(parquet=str(root), source="parquet", start=None, end=None, regions=None,
                              rt_size_min=0, fleet=None, fleets=None, baseline="default", bootstrap=10, seed=0)
    assert report_command.parameters(args, path, tmp_path, None, None) == {}  # it declares none of ours
    with pytest.raises(report.ReportError, match=r"^broken: cell 3 failed: ZeroDivisionError: division by zero"):
        report.execute(path, {"divisor": 0}, tmp_path / "out", progress=lambda _: None)
    failed = nbformat.read(tmp_path / "out" / "broken.failed.ipynb", as_version=4)
    assert failed.cells[1].source == "# Parameters\ndivisor = 0\n"
    assert main(["report", "--notebook", str(path), "--parquet", str(root), "--out", str(tmp_path / "cli")]) == 0


def test_parameters_are_injected_after_the_tagged_cell():
    nb = nbformat.read(report.notebook_path("fleets"), as_version=4)
    assert {"source", "parquet_dir", "fleets", "baseline", "n_boot", "seed", "output_dir"} <= report.parameter_names(nb)
    injected = report.inject_parameters(nb, {"n_boot": 10, "fleets": ["default", "optprov"]})
    tagged = [i for i, c in enumerate(injected.cells) if "parameters" in c.metadata.get("tags", [])]
    assert injected.cells[tagged[0] + 1].source == "# Parameters\nn_boot = 10\nfleets = ['default', 'optprov']\n"
    assert len(injected.cells) == len(nb.cells) + 1
    with pytest.raises(DataError, match="takes no parameter.* bootstraps"):
        report.inject_parameters(nb, {"bootstraps": 10})


def test_default_input_is_the_demo_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PARSEC_SCHEDULER_PARQUET_DIR", raising=False)
    monkeypatch.delenv("PARSEC_PARQUET_DIR", raising=False)
    (tmp_path / ".parsec" / "parquet").mkdir(parents=True)  # where `parsec demo` run here writes
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    args = parser.parse_args([])
    params = report_command.parameters(args, report.notebook_path("weekly"), tmp_path / "out", None, None)
    assert params["parquet_dir"] == str(tmp_path / ".parsec" / "parquet")
    assert params["output_dir"] == str(tmp_path / "out" / "weekly_report")
    assert args.out == ".parsec/report"


@pytest.mark.parametrize("name", sorted(report.NOTEBOOKS))
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(report.notebook_path(name), as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert sum(cell.cell_type == "markdown" and "Methodology" in cell.source for cell in nb.cells) >= 5
