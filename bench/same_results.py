"""Same results before and after a change: the deterministic benches run on two checkouts.

A redesign must not change what parsec measures. The simulator is deterministic for a seed,
so its benches give the same figures bit for bit when the engine behaves the same. This
runs each of them once on a checkout of ``--before`` (a git revision, checked out in a
temporary worktree) and once on this checkout, with the same interpreter, one after the
other, and compares every figure except the ones that time the run itself (wall and CPU
seconds, memory, load, timestamps). It writes ``bench/results-same.json``: per bench the
command, whether the figures are identical, the first differences, and both wall times
(their ratio is the change's speed, on a quiet machine only).

    .venv/bin/python bench/same_results.py --before 60adec3
    .venv/bin/python bench/same_results.py --before HEAD~3 --quick   # smaller runs
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN_FIELDS = ("wall", "cpu", "rss", "generated", "load_average", "build_s", "lookups_s", "command", "json")
"""A figure whose name contains one of these times the run itself: not compared."""

SIMULATE = ("import sys; from parsec.cli import main; sys.argv = ['parsec', 'simulate', *sys.argv[1:]]; "
            "sys.exit(main())")


def benches(quick: bool, out: Path) -> list[tuple[str, list[str], Path | None]]:
    """(name, arguments after the interpreter, results file or None for stdout)."""
    peers = "5000" if quick else "25000"
    return [
        ("sim", ["bench/sim.py", "--runs", "1", "--peers", peers, "--lookups", "2000" if quick else "10000",
                 "--json", str(out / "sim.json")], out / "sim.json"),
        ("simulate", ["-c", SIMULATE, "--peers", peers, "--rounds", "14", "--seed", "0", "--output", "none"], None),
        ("simulate-go-rules", ["-c", SIMULATE, "--peers", peers, "--rounds", "14", "--seed", "1", "--optprov-rules",
                               "go", "--churn", "0", "--output", "none"], None),
        ("calibrate", ["bench/calibrate.py", "--peers", "5000" if quick else "10000", "--rounds", "14" if quick else "28",
                       "--seeds", "0", "--json", str(out / "calibrate.json")], out / "calibrate.json"),
        ("validate-quick", ["bench/validate.py", "--quick", "--json", str(out / "validate.json")],
         out / "validate.json"),
    ]


def figures(value, path: str = "") -> dict[str, object]:
    """Every leaf of a JSON value by its path, less the run's own timings."""
    if isinstance(value, dict):
        found: dict[str, object] = {}
        for key, item in value.items():
            if not any(word in str(key) for word in RUN_FIELDS):
                found.update(figures(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        found = {}
        for index, item in enumerate(value):
            found.update(figures(item, f"{path}[{index}]"))
        return found
    return {path: value}


_CLOCK = re.compile(r"^\[\d\d:\d\d:\d\d\] ")
_WALL = re.compile(r" in \d+(\.\d+)?s\b|, \d+(\.\d+)?s wall")


def stdout_figures(text: str) -> dict[str, object]:
    """A command's printed lines, less time stamps and how long the run took."""
    return {f"line {number}": _WALL.sub("", _CLOCK.sub("", line)) for number, line in enumerate(text.splitlines())}


def run(checkout: Path, arguments: list[str], results: Path | None) -> tuple[dict[str, object], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], cwd=checkout, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"same_results: {' '.join(arguments[:2])} failed in {checkout}:\n{done.stderr[-2000:]}")
    if results is None:
        return stdout_figures(done.stdout), wall
    return figures(json.loads(results.read_text())), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the git revision to compare against (e.g. 60adec3)")
    parser.add_argument("--quick", action="store_true", help="smaller networks (a few minutes in all)")
    parser.add_argument("--only", help="comma-separated bench names (default all)")
    parser.add_argument("--ignore", action="append", default=[], metavar="TEXT",
                        help="leave out figures whose path contains TEXT (e.g. '.source': a file path the change "
                             "moved, quoted as a parameter's source); repeatable, recorded in the results")
    parser.add_argument("--json", default=str(Path(__file__).with_name("results-same.json")))
    args = parser.parse_args()
    after = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip())
    checks = []
    with tempfile.TemporaryDirectory(prefix="parsec-same-") as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            wanted = None if not args.only else set(args.only.split(","))
            for name, arguments, _ in benches(args.quick, Path("OUT")):
                if wanted is not None and name not in wanted:
                    continue
                outputs = {}
                for side, checkout in (("before", before_tree), ("after", ROOT)):
                    out = Path(tmp) / side
                    out.mkdir(exist_ok=True)
                    _, side_arguments, results = next(b for b in benches(args.quick, out) if b[0] == name)
                    outputs[side] = run(checkout, side_arguments, results)
                (old, old_wall), (new, new_wall) = outputs["before"], outputs["after"]
                compared = sorted(key for key in set(old) | set(new) if not any(text in key for text in args.ignore))
                differences = [{"figure": key, "before": old.get(key), "after": new.get(key)}
                               for key in compared if old.get(key) != new.get(key)]
                checks.append({"bench": name, "arguments": arguments, "figures": len(compared),
                               "identical": not differences, "differences": differences[:20],
                               "wall_s_before": round(old_wall, 1), "wall_s_after": round(new_wall, 1)})
                print(f"{name}: {len(compared)} figures, {'identical' if not differences else f'{len(differences)} differ'}"
                      f"; wall {old_wall:.1f}s before, {new_wall:.1f}s after", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, capture_output=True)
    report = {"command": "bench/same_results.py " + " ".join(sys.argv[1:]), "before": args.before,
              "after": after + ("+uncommitted" if dirty else ""), "quick": args.quick, "ignored": args.ignore,
              "checks": checks,
              "all_identical": all(check["identical"] for check in checks)}
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written {args.json}: {'all identical' if report['all_identical'] else 'DIFFERENCES'}")
    return 0 if report["all_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
