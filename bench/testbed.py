"""Testbed scale, then every fleet on one realistic mixed testbed.

Part 1: starts each testbed on Ray (RAY_ADDRESS or a private local cluster) the way `parsec
testbed` does, measures the time until every routing table is filled and the resident
memory of the shard processes (and their Go/Node children) per peer. Then stops it.

Part 2 (``--fleet-testbed``): one mixed testbed with the default latency matrix, the default
unreachable share and churn (TestbedSettings' published defaults); every fleet — ``default``,
``optprov``, ``fullrt``, ``pylibp2p``, ``go``, ``js`` — provides in turn and the others look
the record up (bench/fleets.py's ``run_fleets``, so the JSON has what its JSON has: every
operation's sample, not-found and errors per fleet, p50/p90 of provide and TTFPR with
bootstrap 95 % intervals, speed-ups against ``default`` with theirs); the round trips along
the path to the first provider (hops x RTT, a lower bound of TTFPR) are kept where the
fleet's trace has them (our engine's fleets).

The default ``--rounds 30`` gives every fleet n = 30 provides and 30 x 5 retrievals. How
long: a round is one provide per fleet and five lookups of each record, one at a time, with
the published defaults (dial timeouts to unreachable peers, churn): classic provides and the
go and js fleets' own provides wait out dial timeouts (10-20 s each), ``pylibp2p`` waits
out its own timeouts in every provide and lookup (30-40 s each), so a round of all six
fleets takes ≈4-5 min and the default run ≈2-2.5 h; without ``pylibp2p`` ≈1 min a round,
≈30 min. Part 1 takes a minute or two per testbed.

    .venv/bin/python bench/testbed.py --sizes py=1000 go=1000 js=1000 go=3000,js=1000,py=1000
    .venv/bin/python bench/testbed.py --sizes --fleet-testbed go=300,js=100,py=100 \
        --json bench/results-testbed-fleets.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from parsec.kad.fleets import STRATEGIES  # noqa: E402

from fleets import BOOTSTRAP, ROUNDS, command_line, dumps  # noqa: E402


def measure(mix: str, shards: int, latency, unreachable: float) -> dict:
    import ray

    from parsec.config import TestbedSettings
    from parsec.cluster.deploy import start_testbed

    settings = TestbedSettings(mix=mix, processes=shards, unreachable=unreachable)
    started = time.monotonic()
    testbed = start_testbed(settings, "/ipfs/kad/1.0.0", name=f"bench-tb-{int(started)}",
                            progress=lambda line: print(f"  {line}", flush=True), latency=latency)
    try:
        ready = time.monotonic() - started
        memory = sum(ray.get([shard.memory.remote() for shard in testbed.shards]))
        peers = len(testbed.peers)
        return {"mix": mix, "peers": peers, "ready_s": round(ready, 2), "fill_phase_s": round(testbed.ready_seconds, 2),
                "rss_mb": round(memory / 2**20, 1), "mb_per_peer": round(memory / 2**20 / peers, 3),
                "ghosts": len(testbed.ghosts)}
    finally:
        testbed.stop()


def fleets_on_mixed_testbed(mix: str, fleets: list[str], rounds: int, shards: int) -> dict:
    """Part 2: every fleet on one testbed with the published defaults (latency, unreachable
    peers, churn); the table of bench/fleets.py."""
    from fleets import REGION, print_table, run_fleets

    from parsec.config import NetworkSettings, TestbedSettings

    settings = TestbedSettings(mix=mix, processes=shards)
    latency = NetworkSettings(latency_matrix="default").latency_model()
    print(f"fleets {', '.join(fleets)} on testbed {mix}: default latency matrix, {settings.unreachable:.0%} "
          f"unreachable, churn median session {settings.churn_session:g}s, {rounds} rounds", flush=True)
    result = run_fleets(settings, fleets, rounds, warmup=2, latency=latency, name="bench-tb-fleets")
    print_table(sum(settings.composition().values()), result)
    return {"mix": mix, "unreachable": settings.unreachable, "churn_session_s": settings.churn_session,
            "latency": "default", "region": REGION, "rounds": rounds, "results": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["py=1000", "go=1000", "js=1000", "go=3000,js=1000,py=1000"])
    parser.add_argument("--shards", type=int, default=2, help="processes for the py peers")
    parser.add_argument("--latency", default="off", help="for part 1; part 2 always uses the default matrix")
    parser.add_argument("--unreachable", type=float, default=0.0, help="for part 1")
    parser.add_argument("--fleet-testbed", help="part 2 on this mix, e.g. go=600,js=200,py=200 (default: skip)")
    parser.add_argument("--fleets", default=",".join(STRATEGIES), help="comma-separated fleets (default every strategy)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"part 2: rounds (each fleet provides once a round; default {ROUNDS}: n >= 30 per cell)")
    parser.add_argument("--json", type=Path, default=Path("bench-testbed.json"))
    args = parser.parse_args()

    import ray

    from parsec.config import NetworkSettings
    from parsec.cluster.connect import start_ray

    start_ray(os.environ.get("RAY_ADDRESS"))
    latency = NetworkSettings(latency_matrix=args.latency).latency_model()
    rows, fleet_rows = [], None
    try:
        for mix in args.sizes:
            print(f"testbed {mix}", flush=True)
            rows.append(measure(mix, args.shards, latency, args.unreachable))
        if args.fleet_testbed:
            fleet_rows = fleets_on_mixed_testbed(args.fleet_testbed, args.fleets.split(","), args.rounds, args.shards)
    finally:
        ray.shutdown()
    print(f"\n{'testbed':<28} {'peers':>6} {'ready s':>8} {'RSS MB':>8} {'MB/peer':>8}")
    for row in rows:
        print(f"{row['mix']:<28} {row['peers']:>6} {row['ready_s']:>8} {row['rss_mb']:>8} {row['mb_per_peer']:>8}")
    big = [row for row in rows if row["peers"] >= 5000]
    for row in big:
        print(f"{row['mix']}: ready in {row['ready_s']} s (goal <= 60 s): {'met' if row['ready_s'] <= 60 else 'NOT met'}")
    args.json.write_text(dumps({"command": command_line(), "bootstrap": BOOTSTRAP if fleet_rows else None,
                                "testbeds": rows, "fleets": fleet_rows}))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
