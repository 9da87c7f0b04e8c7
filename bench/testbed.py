"""Testbed scale, then every fleet on one realistic mixed testbed.

Part 1: starts each testbed on Ray (RAY_ADDRESS or a private local cluster) the way `parsec
testbed` does, measures the time until every routing table is filled and the resident
memory of the shard processes (and their Go/Node children) per peer. Then stops it.

Part 2 (``--fleet-testbed``): one mixed testbed with the default latency matrix, the default
unreachable share and churn (TestbedSettings' published defaults); every fleet — ``default``,
``optprov``, ``fullrt``, ``pylibp2p``, ``go``, ``js`` — provides in turn and the others look
the record up (bench/fleets.py's loop); p50/p90 of provide and TTFPR per fleet, with the
round trips along the path to the first provider (hops x RTT, a lower bound of TTFPR) next
to each TTFPR p50 where the fleet's trace has it (our engine's fleets).

    .venv/bin/python bench/testbed.py --sizes py=1000 go=1000 js=1000 go=3000,js=1000,py=1000
    .venv/bin/python bench/testbed.py --sizes --fleet-testbed go=600,js=200,py=200 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(mix: str, shards: int, latency, unreachable: float) -> dict:
    import ray

    from parsec.config import TestbedSettings
    from parsec.deploy import start_testbed

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
    from fleets import print_table, run_fleets

    from parsec.config import NetworkSettings, TestbedSettings

    settings = TestbedSettings(mix=mix, processes=shards)
    latency = NetworkSettings(latency_matrix="default").latency_model()
    print(f"fleets {', '.join(fleets)} on testbed {mix}: default latency matrix, {settings.unreachable:.0%} "
          f"unreachable, churn median session {settings.churn_session:g}s, {rounds} rounds", flush=True)
    result = run_fleets(settings, fleets, rounds, warmup=2, latency=latency, name="bench-tb-fleets")
    print_table(sum(settings.composition().values()), result)
    return {"mix": mix, "unreachable": settings.unreachable, "churn_session_s": settings.churn_session,
            "latency": "default", "rounds": rounds, "results": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["py=1000", "go=1000", "js=1000", "go=3000,js=1000,py=1000"])
    parser.add_argument("--shards", type=int, default=2, help="processes for the py peers")
    parser.add_argument("--latency", default="off", help="for part 1; part 2 always uses the default matrix")
    parser.add_argument("--unreachable", type=float, default=0.0, help="for part 1")
    parser.add_argument("--fleet-testbed", help="part 2 on this mix, e.g. go=600,js=200,py=200 (default: skip)")
    parser.add_argument("--fleets", default="default,optprov,fullrt,pylibp2p,go,js")
    parser.add_argument("--rounds", type=int, default=6, help="part 2: rounds (each fleet provides once a round)")
    parser.add_argument("--json", type=Path, default=Path("bench-testbed.json"))
    args = parser.parse_args()

    import ray

    from parsec.config import NetworkSettings
    from parsec.demo import start_ray

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
    args.json.write_text(json.dumps({"testbeds": rows, "fleets": fleet_rows}, indent=2))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
