"""Measured against the path bound: how much of a TTFPR the emulated network explains.

Runs the demo (`parsec demo`: the 200-peer testbed with the public DHT's latency matrix,
unreachable share and churn, three server actors in three regions, the scheduler as a Ray
job) once per fleet, then reads each run's Parquet dataset and compares every successful
retrieval's duration with its trace's ``path_bound_s`` (the latency model's least time for
the path the walk took) and ``path_wait_s`` (the walk's own waits for a free slot on that
path), and counts the operations timed while the measuring loop stalled for more than the
threshold (``host_lag_ms``). One fleet per run keeps the load of the machine what the demo
puts on it.

    .venv/bin/python bench/bounds.py --fleets default,optprov,fullrt --rounds 16 --json bench/results-bounds.json

Targets (issue 15): TTFPR p50 ≤ 1.15 × path-bound p50 per fleet, fewer than 5 % of the
operations flagged. A run of 16 rounds per fleet (≥ 30 retrievals) takes about 4 minutes
per fleet on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parsec.kad.fleets import ENGINE_STRATEGIES  # noqa: E402

TARGET_RATIO = 1.15
TARGET_FLAGGED = 0.05
BOOTSTRAP = {"n_boot": 2000, "seed": 0, "level": 0.95}


def run_demo(fleet: str, rounds: int, state: Path, log: Path) -> int:
    """``parsec demo`` for one fleet, its output in ``log``; the exit status."""
    command = [str(ROOT / ".venv" / "bin" / "parsec"), "demo", "--fleets", fleet, "--rounds", str(rounds),
               "--state-dir", str(state)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)  # a private cluster per run, as a newcomer's demo
    env.pop("PARSEC_DATABASE_HOST", None)
    with log.open("w") as out:
        return subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def analyse(parquet: Path, threshold_ms: float) -> dict:
    """The samples and statistics of one run's dataset."""
    import numpy as np

    from parsec.analysis.stats import bootstrap_paired_ratio, bootstrap_quantile
    from parsec.store.parquet import read_dataset

    frame = read_dataset(parquet)
    retrievals = frame[frame["kind"] == "retrieval"]
    ok = retrievals[retrievals["error"].isna()]
    traces = [json.loads(t) if isinstance(t, str) else {} for t in ok["trace"]]
    samples = [{"duration_s": float(d), "path_bound_s": t.get("path_bound_s"), "path_wait_s": t.get("path_wait_s"),
                "host_lag_ms": t.get("host_lag_ms"), "hops": t.get("hops"), "local": bool(t.get("local")),
                "region": region}
               for d, t, region in zip(ok["duration"], traces, ok["region"])]
    bounded = [s for s in samples if s["path_bound_s"]]
    measured = np.array([s["duration_s"] for s in bounded])
    bound = np.array([s["path_bound_s"] for s in bounded])
    lags = [t for t in (json.loads(x) if isinstance(x, str) else {} for x in frame["trace"])]
    lag_values = [t["host_lag_ms"] for t in lags if isinstance(t.get("host_lag_ms"), (int, float))]
    flagged = sum(lag > threshold_ms for lag in lag_values)
    ratio = bootstrap_paired_ratio(measured, bound, **BOOTSTRAP)  # p50(measured) / p50(bound), pairs resampled
    per_operation = bootstrap_quantile(measured / bound, **BOOTSTRAP) if len(bounded) else None
    ttfpr = bootstrap_quantile(measured, **BOOTSTRAP)
    bound_p50 = bootstrap_quantile(bound, **BOOTSTRAP)
    waits = [s["path_wait_s"] for s in bounded if s["path_wait_s"] is not None]
    return {
        "retrievals": len(retrievals), "successful": len(ok), "with_bound": len(bounded),
        "local_answers": sum(s["local"] for s in samples),
        "provides": int((frame["kind"] == "provide").sum()), "errors": int(frame["error"].notna().sum()),
        "ttfpr_p50_s": ttfpr.point, "ttfpr_p50_ci": [ttfpr.low, ttfpr.high],
        "bound_p50_s": bound_p50.point, "bound_p50_ci": [bound_p50.low, bound_p50.high],
        "ratio_of_p50": ratio.point, "ratio_of_p50_ci": [ratio.low, ratio.high],
        "median_of_ratios": per_operation and per_operation.point,
        "median_of_ratios_ci": per_operation and [per_operation.low, per_operation.high],
        "path_wait_p50_s": float(np.median(waits)) if waits else None,
        "operations_with_lag": len(lag_values), "flagged": int(flagged),
        "flagged_share": flagged / len(lag_values) if lag_values else None,
        "lag_p50_ms": float(np.median(lag_values)) if lag_values else None,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleets", default=",".join(ENGINE_STRATEGIES), help="one demo run per fleet (comma-separated)")
    parser.add_argument("--rounds", type=int, default=16,
                        help="scheduler rounds per run; each gives two retrievals (default 16: n >= 30)")
    parser.add_argument("--host-lag-threshold", type=float, default=50.0,
                        help="milliseconds of host lag above which an operation is flagged (default 50)")
    parser.add_argument("--json", type=Path, default=Path("bench-bounds.json"), help="where the results go")
    parser.add_argument("--state-dir", type=Path, help="keep each run's data here (default: a temporary folder)")
    args = parser.parse_args()

    started = time.monotonic()
    results = {}
    with contextlib.ExitStack() as stack:
        base = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parsec-bounds-")))
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # the embedded PostgreSQL runs as the 'postgres' user: it must reach its data dir
        for fleet in [f for f in args.fleets.split(",") if f]:
            state = base / fleet
            print(f"{fleet}: parsec demo --fleets {fleet} --rounds {args.rounds} (log {base / fleet}.log)", flush=True)
            status = run_demo(fleet, args.rounds, state, base / f"{fleet}.log")
            if status != 0:
                tail = (base / f"{fleet}.log").read_text().splitlines()[-5:]
                print(f"{fleet}: the demo failed (exit {status}); its log ends:", *tail, sep="\n  ", flush=True)
                results[fleet] = {"demo_exit": status}
                continue
            results[fleet] = analyse(state / "parquet", args.host_lag_threshold)
            r = results[fleet]
            print(f"{fleet}: n={r['with_bound']} TTFPR p50 {r['ttfpr_p50_s']:.3f} s, bound p50 {r['bound_p50_s']:.3f} s, "
                  f"ratio {r['ratio_of_p50']:.2f} [{r['ratio_of_p50_ci'][0]:.2f}, {r['ratio_of_p50_ci'][1]:.2f}] "
                  f"(target <= {TARGET_RATIO}), flagged {r['flagged']}/{r['operations_with_lag']}", flush=True)
    argv = [".venv/bin/python", str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]]
    args.json.write_text(json.dumps({"command": shlex.join(argv), "rounds": args.rounds,
                                     "host_lag_threshold_ms": args.host_lag_threshold, "bootstrap": BOOTSTRAP,
                                     "targets": {"ratio_of_p50": TARGET_RATIO, "flagged_share": TARGET_FLAGGED},
                                     "wall_s": round(time.monotonic() - started, 1), "results": results},
                                    indent=1))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
