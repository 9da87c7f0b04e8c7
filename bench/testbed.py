"""Testbed scale: readiness time and memory per peer, per implementation and mixed.

Starts each testbed on Ray (RAY_ADDRESS or a private local cluster) the way `parsec
testbed` does, measures the time until every routing table is filled, and the resident
memory of the shard processes (and their Go/Node children) per peer, beside an idle
baseline of the same processes measured the same way. Then stops it.

    .venv/bin/python bench/testbed.py --sizes py=1000 go=1000 js=1000 go=3000,js=1000,py=1000
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["py=1000", "go=1000", "js=1000", "go=3000,js=1000,py=1000"])
    parser.add_argument("--shards", type=int, default=2, help="processes for the py peers")
    parser.add_argument("--latency", default="off")
    parser.add_argument("--unreachable", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=Path("bench-testbed.json"))
    args = parser.parse_args()

    import ray

    from parsec.config import NetworkSettings
    from parsec.demo import start_ray

    start_ray(os.environ.get("RAY_ADDRESS"))
    latency = NetworkSettings(latency_matrix=args.latency).latency_model()
    rows = []
    try:
        for mix in args.sizes:
            print(f"testbed {mix}", flush=True)
            rows.append(measure(mix, args.shards, latency, args.unreachable))
    finally:
        ray.shutdown()
    print(f"\n{'testbed':<28} {'peers':>6} {'ready s':>8} {'RSS MB':>8} {'MB/peer':>8}")
    for row in rows:
        print(f"{row['mix']:<28} {row['peers']:>6} {row['ready_s']:>8} {row['rss_mb']:>8} {row['mb_per_peer']:>8}")
    big = [row for row in rows if row["peers"] >= 5000]
    for row in big:
        print(f"{row['mix']}: ready in {row['ready_s']} s (goal <= 60 s): {'met' if row['ready_s'] <= 60 else 'NOT met'}")
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
