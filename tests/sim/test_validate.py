"""bench/validate.py --quick: the results file's shape, and that the roles are the declared ones.

The docs (bench/validate.py's docstring, the README's validation section) say: the population
splits are fitted on the TTFPR p50 of the six week-11 regions and ``dial_refused`` on the classic
provide p50; every other figure is held out, and each of the six regions is left out once.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from parsec.analysis import published

ROOT = Path(__file__).resolve().parents[2]
SIX = ("eu-central-1", "us-west-1", "ap-south-1", "sa-east-1", "af-south-1", "ap-southeast-2")
DECLARED_FITTED = {f"TTFPR p50 {region}" for region in SIX} | {"classic provide p50 (20–26 May 2023)"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("validate") / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "validate.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_every_option_has_help() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "validate.py"), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0
    section = done.stdout.split("options:", 1)[1]
    entries = [entry.strip() for entry in re.split(r"\n  (?=-)", section) if entry.strip()]
    names = [entry.split()[0].rstrip(",") for entry in entries]
    assert {"--quick", "--seeds", "--fit-seeds", "--skip-fit", "--json", "--set"} <= set(names), names
    for name, entry in zip(names, entries):
        parts = re.split(r" {2,}|\n", entry, maxsplit=1)
        assert len(parts) == 2 and len(parts[1].split()) >= 3, f"{name} has no help text"


def test_results_have_the_declared_shape(quick) -> None:
    result, stdout = quick
    assert {"figures", "loro", "seeds", "settings", "sourced_parameters", "fitted_parameters", "interval",
            "wall_s", "summary"} <= set(result)
    assert result["quick"] is True and len(result["seeds"]) >= 5
    assert not set(result["seeds"]) & set(result["fit"]["seeds"])
    for row in result["figures"]:
        assert {"figure", "source", "role", "published", "simulated", "ci_low", "ci_high", "n"} <= set(row)
        assert row["role"] in ("fitted", "held_out")
        assert row["source"], row["figure"]
        assert len(row["per_seed"]) <= len(result["seeds"]) and len(row["n_per_seed"]) == len(result["seeds"])
        if row["simulated"] is not None and row["ci_low"] is not None:
            assert row["ci_low"] <= row["simulated"] <= row["ci_high"]
        if row["figure"].startswith(("TTFPR", "classic provide")):
            assert row["n"] > 0 and row["simulated"] is not None, row["figure"]
    assert "figure" in stdout and "held_out" in stdout  # the closing table is printed
    assert "step 1" in stdout and "evaluate" in stdout  # and progress while it ran


def test_roles_are_the_declared_ones(quick) -> None:
    result, _ = quick
    roles = {row["figure"]: row["role"] for row in result["figures"]}
    assert {name for name, role in roles.items() if role == "fitted"} == DECLARED_FITTED
    held_out = [name for name, role in roles.items() if role == "held_out"]
    assert len(held_out) >= 5
    for region in SIX:  # the p90 and p99 of every fitted region, and the seventh region, are held out
        assert roles[f"TTFPR p90 {region}"] == roles[f"TTFPR p99 {region}"] == "held_out"
    assert roles["TTFPR p50 us-east-2"] == "held_out"
    fitted_on = {name for parameter in result["fitted_parameters"] for name in parameter["fitted_on"]}
    assert fitted_on == DECLARED_FITTED
    # the published values are parsec.analysis.published's, each with a primary source there
    for row in result["figures"]:
        if row["figure"].startswith("TTFPR p50 ") and row["figure"].split()[-1] in SIX:
            figure = published.lookup("default", "retrieval", "p50", row["figure"].split()[-1])
            assert row["published"] == figure.low and row["source"] == figure.source


def test_each_region_is_left_out_once(quick) -> None:
    result, _ = quick
    folds = result["loro"]
    assert [fold["left_out"] for fold in folds] == list(SIX)
    for fold in folds:
        assert fold["predicted"] is not None and fold["n"] > 0
        assert fold["published"] == published.lookup("default", "retrieval", "p50", fold["left_out"]).low
