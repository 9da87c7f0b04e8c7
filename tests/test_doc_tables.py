"""The measurement tables in the docs are what the results files say (``bench/tables.py``).

Drift between a ``bench/results-*.json`` file and its table in docs/results.md (or a generated
block of another docs page: docs/simulation.md's validation line, docs/operations.md's index of
results files; README.md is read too and holds none) fails here: regenerate with
``.venv/bin/python bench/tables.py``. The docs' relative links must name files that exist.
"""

from __future__ import annotations

import importlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# docs/results.md first (the tests below edit it), as bench/tables.py orders them
DOCS = [REPO / "docs" / "results.md",
        *sorted(path for path in (REPO / "docs").glob("*.md") if path.name != "results.md"),
        REPO / "README.md"]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("tables")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def fleets(tables):
    return sys.modules["fleets"]


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "tables.py"), "--check", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_the_docs_tables_are_the_results_files():
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_hand_edited_table_fails_the_check(tmp_path):
    docs = [Path(shutil.copy(doc, tmp_path / doc.name)) for doc in DOCS]
    results = docs[0].read_text()
    block = re.search(r"<!-- table:chaos -->.*?<!-- /table -->", results, re.S).group(0)
    edited = block.replace("| 555 |", "| 556 |", 1)
    assert edited != block
    docs[0].write_text(results.replace(block, edited))
    done = check("--docs", *map(str, docs))
    assert done.returncode == 1
    assert "results.md: tables differ" in done.stdout and "+| 1 | 186 s | 555 |" in done.stdout


def test_a_changed_results_file_fails_the_check(tmp_path):
    for path in BENCH.glob("results-*.json"):
        shutil.copy(path, tmp_path / path.name)
    chaos = json.loads((tmp_path / "results-chaos.json").read_text())
    chaos["audit"]["issued"] += 1
    (tmp_path / "results-chaos.json").write_text(json.dumps(chaos))
    done = check("--results", str(tmp_path))
    assert done.returncode == 1 and "tables differ" in done.stdout


def copy_results(tmp_path: Path) -> dict:
    """Every results file copied to ``tmp_path``; returns results-validate.json's content."""
    for path in BENCH.glob("results-*.json"):
        shutil.copy(path, tmp_path / path.name)
    return json.loads((tmp_path / "results-validate.json").read_text())


def test_a_changed_validation_file_fails_the_check(tmp_path):
    doc = copy_results(tmp_path)
    row = next(row for row in doc["figures"] if row["figure"] == "TTFPR p90 eu-central-1")
    assert round(row["simulated"], 2) != 0.51
    row["simulated"] = 0.51
    (tmp_path / "results-validate.json").write_text(json.dumps(doc))
    done = check("--results", str(tmp_path))
    assert done.returncode == 1 and "results.md: tables differ" in done.stdout
    assert "+| TTFPR p90 eu-central-1 | held out | one week of March 2023 | [1] | 0.44 s | 0.51 s [" in done.stdout


VALIDATE_TABLES = ("validate", "validate-loro", "validate-parameters")


def test_the_validation_tables_name_their_command_and_n(tables):
    doc = json.loads((BENCH / "results-validate.json").read_text())
    command = f"reproduce: `.venv/bin/python {doc['command'].strip()}`"
    for name in VALIDATE_TABLES:
        text = tables.render_table(name)
        assert command in text, name
        assert re.search(r"\| n \||n = \d", text), name
    figures = tables.render_table("validate")
    rows = [line for line in figures.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(doc["figures"])  # one row a figure, each with its n
    for line, row in zip(rows, doc["figures"]):
        assert line.startswith(f"| {row['figure']} | {row['role'].replace('_', ' ')} |")
        assert f"| {row['n']:,} |" in line
    assert "n ≥ " in tables.render_table("validate-summary")


def test_the_validation_findings_are_computed_from_the_file(tables, tmp_path):
    doc = copy_results(tmp_path)
    summary = doc["summary"]["held_out"]
    text = tables.render_table("validate", tmp_path)
    assert f"**{summary['within_30pct']} of {summary['figures']} within ±30 %**" in text
    assert "TTFPR p50/p90/p99 us-east-2: 0.65×, 0.57×, 0.22×" in text
    assert "Europe 27 %" in text and "is the slow cluster's point next to the jump" in text
    # a held-out figure that leaves the ±30 % band, a fold that enters it, another continental split
    row = next(row for row in doc["figures"] if row["figure"] == "TTFPR p90 us-west-1")
    row.update(simulated=0.9, ratio=1.5, within_30pct=False)
    fold = next(fold for fold in doc["loro"] if fold["left_out"] == "us-west-1")
    fold.update(ratio=1.1, within_30pct=True)
    continents = next(row for row in doc["sourced_parameters"] if row["parameter"].startswith("population"))
    continents["value"]["Europe"] = 0.31
    (tmp_path / "results-validate.json").write_text(json.dumps(doc))
    text = tables.render_table("validate", tmp_path)
    held = summary["figures"]
    assert f"**{summary['within_30pct'] - 1} of {held} within ±30 %**" in text
    assert "TTFPR p90 us-west-1: 1.50×" in text and "Europe 31 %" in text
    assert f"**{summary['within_30pct'] - 1} of {held} held-out" in tables.render_table("validate-summary", tmp_path)
    assert "**5 of 6 folds within ±30 %**; outside: eu-central-1 (2.25×)." in tables.render_table("validate-loro",
                                                                                                  tmp_path)
    (tmp_path / "results-validate.json").unlink()
    for name in (*VALIDATE_TABLES, "validate-summary"):
        assert tables.render_table(name, tmp_path).startswith("No results yet: `bench/results-validate.json`")


def test_every_table_is_registered_once_and_shown(tables):
    out = io.StringIO()
    assert tables.run(DOCS, check=True, out=out) == 0, out.getvalue()
    shown = [m["name"] for doc in DOCS for m in tables.MARKER.finditer(doc.read_text())]
    assert sorted(shown) == sorted(tables.TABLES)


def test_the_docs_list_what_tables_py_checks(tables):
    assert [Path(doc) for doc in tables.DOCS] == DOCS


def test_the_generated_blocks_outside_results_md_are_where_the_docs_say(tables):
    """The validation line lives in docs/simulation.md, the headlines and the bench tables in
    docs/results.md, the index of results files in docs/operations.md; the README holds none."""
    where = {m["name"]: doc.name for doc in DOCS for m in tables.MARKER.finditer(doc.read_text())}
    assert where["validate-summary"] == "simulation.md"
    assert where["results-files"] == "operations.md"
    assert where["headlines"] == where["chaos"] == "results.md"
    assert "README.md" not in where.values()


def test_the_index_of_results_files_names_every_file_and_its_recorded_command(tables, tmp_path):
    text = tables.render_table("results-files")
    for path in sorted(BENCH.glob("results-*.json")):
        row = next(line for line in text.splitlines() if line.startswith(f"| `bench/{path.name}` |"))
        recorded = json.loads(path.read_text()).get("command")
        if recorded:
            assert recorded.strip() in row and "| recorded in the file |" in row, path.name
        else:
            assert "| not recorded in the file: the command that wrote it |" in row, path.name
    # a changed recorded command changes the index, and the check fails on it
    copy_results(tmp_path)
    bounds = json.loads((tmp_path / "results-bounds.json").read_text())
    bounds["command"] = bounds["command"].replace("--rounds 16", "--rounds 17")
    (tmp_path / "results-bounds.json").write_text(json.dumps(bounds))
    assert "--rounds 17" in tables.render_table("results-files", tmp_path)
    done = check("--results", str(tmp_path))
    assert done.returncode == 1 and "operations.md: tables differ" in done.stdout


LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but ``-`` and ``_`` dropped, spaces → ``-``."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_relative_link_in_the_docs_exists():
    broken = []
    for doc in DOCS:
        for match in LINK.finditer(doc.read_text()):
            target = match["target"]
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_an_unknown_marker_is_an_error(tables):
    with pytest.raises(SystemExit, match="no function"):
        tables.render("<!-- table:no-such-table -->\n<!-- /table -->\n")


def test_the_chaos_table_has_exactly_the_runs_of_its_file(tables):
    doc = json.loads((BENCH / "results-chaos.json").read_text())
    runs = doc.get("runs") or [doc]
    text = tables.render_table("chaos")
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs):
        assert f"| {run['audit']['issued']} | {run['audit']['postgres_rows']} | {run['audit']['parquet_rows']} |" in row


def test_files_without_samples_say_so_and_get_no_interval(tables):
    """bench/results-fleets-wan-pylibp2p.json predates per-operation samples (4 rounds)."""
    text = tables.render_table("fleets-wan-pylibp2p")
    assert "No per-operation samples in this file" in text
    assert "[" not in "".join(line for line in text.splitlines() if line.startswith("| 200 "))
    assert "| 200 | pylibp2p | 4 † | 0 |" in text  # n = 4 rounds: below 30, marked


def synthetic_run(fleets, rounds: int = 30) -> dict:
    """A bench/fleets.py results file as the bench writes it (``summarise_all``), with made-up
    samples: default provides ≈10 s, optprov ≈1 s; one optprov retrieval not found, one
    default provide failed."""
    rng = random.Random(1)
    names = ("default", "optprov", "fullrt")
    values = {name: {"provide": [], "ttfpr": [], "provide_errors": [], "ttfpr_errors": [], "not_found": [],
                     "targets_on_true": [20] * rounds, "targets_on_listed": [], "holders": [], "holders_on_true": [],
                     "landed": [], "landed_on_true": [], "walk_end": {}, "estimate": [], "fell_back": 0,
                     "testbed_cpu": []} for name in names}
    scale = {"default": 10.0, "optprov": 1.0, "fullrt": 0.1}
    for r in range(rounds):
        for name in names:
            values[name]["provide"].append({"duration_s": scale[name] * rng.uniform(0.8, 1.2), "rpcs": 40,
                                            "cpu_s": 0.1, "path_bound_s": 0.2, "host_lag_ms": 1.0, "round": r})
            for other in names:
                if other != name:
                    values[other]["ttfpr"].append({"duration_s": rng.uniform(0.2, 0.4), "rpcs": 10, "cpu_s": 0.01,
                                                   "path_rtt_s": 0.15, "round": r, "provider": name})
    values["optprov"]["not_found"].append(values["optprov"]["ttfpr"].pop())
    values["default"]["provide_errors"].append({"round": 3, "error": "RuntimeError: boom"})
    summary = fleets.summarise_all(values)
    return {"command": ".venv/bin/python bench/fleets.py --sizes 200", "latency": "default", "unreachable": 0.45,
            "stale_entries": None, "rounds": rounds, "bootstrap": fleets.BOOTSTRAP, "results": {"200": summary}}


def test_samples_give_n_intervals_and_speedups(tables, fleets, tmp_path):
    doc = synthetic_run(fleets)
    text = fleets.dumps(doc)
    assert json.loads(text) == json.loads(json.dumps(doc))  # one sample a line, same content
    (tmp_path / "results-fleets-wan.json").write_text(text)
    table = tables.render_table("fleets-wan", tmp_path)
    assert "No per-operation samples" not in table and "as recorded in the file" in table
    default = next(line for line in table.splitlines() if line.startswith("| 200 | default |"))
    optprov = next(line for line in table.splitlines() if line.startswith("| 200 | optprov |"))
    cells = [cell.strip() for cell in optprov.strip("|").split("|")]
    assert cells[2] == "30" and cells[7] == "59" and cells[8] == "1 / 0"  # n provides, n retrievals, not found
    assert re.fullmatch(r"\d+(\.\d+)?× \[\d+(\.\d+)?, \d+(\.\d+)?\]", cells[6])  # speed-up with its interval
    ratio = doc["results"]["200"]["optprov"]["speedup_vs_default"]["provide_p50"]
    assert ratio["n_baseline"] == 30 and ratio["n"] == 30 and ratio["ci95"][0] < ratio["ratio"] < ratio["ci95"][1]
    assert 7 < ratio["ratio"] < 14
    assert default.split("|")[4].strip() == "1"  # the failed provide, counted
    assert "†" not in optprov
    # the generator's numbers are the bench's: same samples, same seeded statistics
    p50 = doc["results"]["200"]["optprov"]["provide_p50_s"]
    assert cells[4].startswith(f"{tables.num(p50)} s [")
    assert "path bound (TTFPR p50)" not in table and "path RTT (TTFPR p50)" in table


def test_the_bench_keeps_every_operation(fleets):
    doc = synthetic_run(fleets, rounds=5)
    optprov = doc["results"]["200"]["optprov"]
    samples = optprov["samples"]
    assert len(samples["provide"]) == optprov["provides"] == 5
    assert len(samples["ttfpr"]) == optprov["retrievals"] == 9 and len(samples["not_found"]) == 1
    assert samples["provide"][0]["path_bound_s"] == 0.2 and samples["provide"][0]["host_lag_ms"] == 1.0
    assert optprov["provide_p50_ci95_s"][0] <= optprov["provide_p50_s"] <= optprov["provide_p50_ci95_s"][1]
    assert doc["results"]["200"]["default"]["errors"] == doc["results"]["200"]["default"]["provide_errors"] == 1
    assert "speedup_vs_default" not in doc["results"]["200"]["default"]


def test_sample_keeps_only_numeric_trace_fields(fleets):
    one = fleets.sample(1.5, 0.1, {"rpc_total": 7, "path_rtt_s": 0.3, "path_bound_s": None, "host_lag_ms": 2,
                                   "walk_end": "converged"}, round=0)
    assert one == {"duration_s": 1.5, "rpcs": 7, "cpu_s": 0.1, "path_rtt_s": 0.3, "host_lag_ms": 2, "round": 0}


def test_bootstrap_quantile_is_seeded_and_narrows_with_n():
    import numpy as np

    from parsec.analysis import stats

    rng = np.random.default_rng(7)
    data = rng.exponential(10, 200)
    first = stats.bootstrap_quantile(data, q=0.9, n_boot=500, seed=3)
    assert first == stats.bootstrap_quantile(data, q=0.9, n_boot=500, seed=3)
    assert first.point == pytest.approx(np.quantile(data, 0.9)) and first.n == 200
    assert first.low < first.point < first.high
    few = stats.bootstrap_quantile(data[:10], q=0.9, n_boot=500, seed=3)
    assert few.high - few.low > first.high - first.low
    assert stats.bootstrap_quantile([2.0] * 5) == stats.Interval(2.0, 2.0, 2.0, 5)
    assert stats.bootstrap_quantile([]).n == 0
    with pytest.raises(ValueError):
        stats.bootstrap_quantile([1.0], n_boot=0)
