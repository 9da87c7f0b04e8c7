"""Fleets side by side on one testbed: provide and TTFPR per fleet, RPCs and CPU per
operation, and whether records land on the true 20 closest peers.

Real parts: testbed shards are Ray actors of py-libp2p peers (RAY_ADDRESS or a private
local cluster); one libp2p host per fleet runs in this process, joined the honest way.
Operations run one at a time (concurrent operations in one process measure queueing,
design.md). Each round one fleet provides a fresh key and every other fleet looks it up.

    .venv/bin/python bench/fleets.py --sizes 200,1000 --rounds 20 --json fleets.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

from collections import Counter

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

FLEETS = ("default", "optprov", "fullrt", "pylibp2p")
LANDING_GRACE = 20.0
"""Seconds after the last round before the peers are asked which records they hold: what
optimistic provide stores after answering (its refill followup, dials to unreachable peers
5 s each) has settled by then."""


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def shard_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def run_size(size: int, fleets: list[str], rounds: int, warmup: int, shards: int, latency=None,
             unreachable: float = 0.0, stale_entries: float | None = None) -> dict:
    from parsec.config import TestbedSettings

    # no churn: the truth (the k closest peers) must not move while a round is measured
    stale = {} if stale_entries is None else {"stale_entries": stale_entries}
    return run_fleets(TestbedSettings(peers=size, processes=shards, unreachable=unreachable, churn_session=0, **stale),
                      fleets, rounds, warmup, latency, name=f"bench-fleets-{size}")


def run_fleets(settings, fleets: list[str], rounds: int, warmup: int, latency=None, name: str = "bench-fleets") -> dict:
    """Every fleet on one testbed (``settings``): each round one fleet provides a fresh key
    and every other fleet looks it up; per-fleet statistics."""
    import ray

    from parsec.deploy import start_testbed
    from parsec.kad import PeerRef
    from parsec.cids import cid_v0_for
    from parsec.server.runtime import parse_bootstrap

    protocol = "/ipfs/kad/1.0.0"
    testbed = start_testbed(settings, protocol, name=name, progress=lambda line: print(f"  {line}", flush=True),
                            latency=latency)
    pids = ray.get([shard.__ray_call__.remote(lambda self: os.getpid()) for shard in testbed.shards])
    from parsec.net.local import LocalFleets

    hosts = LocalFleets(fleets, protocol_id=protocol, latency=latency, name="bench-fleets")
    stats = {fleet: {"provide": [], "ttfpr": [], "provide_rpcs": [], "ttfpr_rpcs": [], "provide_cpu": [],
                     "ttfpr_cpu": [], "targets_on_true": [], "targets_on_listed": [], "holders": [], "holders_on_true": [], "landed": [], "landed_on_true": [], "walk_end": Counter(), "estimate": [], "path_rtt": [],
                     "errors": 0, "not_found": 0, "fell_back": 0, "testbed_cpu": []} for fleet in fleets}
    try:
        boot = parse_bootstrap(testbed.bootstrap_addrs(8))
        for fleet, strategy in list(hosts.strategies.items()):
            try:
                _, seconds = hosts.join(fleet, boot)
            except Exception as error:  # a fleet that cannot join is reported, not fatal
                print(f"  {fleet}: join failed ({error}); left out", flush=True)
                fleets = [f for f in fleets if f != fleet]
                stats.pop(fleet)
                continue
            print(f"  {fleet}: joined in {seconds:.1f}s, routing table {strategy.routing_table_size()}", flush=True)
        live = [PeerRef.from_id(p.peer_id) for p in testbed.peers] + [PeerRef.from_id(hosts.ids[f]) for f in fleets]
        listed = live + [PeerRef.from_id(p.peer_id) for p in testbed.ghosts]  # what routing tables hold
        for _ in range(warmup):  # the optprov estimator needs completed lookups first
            for fleet in fleets:
                hosts.timed(hosts.strategies[fleet].provide, cid_v0_for(os.urandom(64))[1])
        provided = []  # (fleet, key, true 20 closest reachable peers): where records should land
        for round_no in range(rounds):
            for fleet in fleets:
                _, key = cid_v0_for(os.urandom(1024))
                before = shard_cpu(pids)
                try:
                    trace, seconds, cpu = hosts.timed(hosts.strategies[fleet].provide, key)
                except Exception as error:  # a failed provide is data
                    stats[fleet]["errors"] += 1
                    print(f"  {fleet} provide failed: {error}", flush=True)
                    continue
                row = stats[fleet]
                data = trace.as_dict()
                row["provide"].append(seconds)
                row["provide_cpu"].append(cpu)
                row["provide_rpcs"].append(data.get("rpc_total", 0))
                row["fell_back"] += bool(data.get("fell_back"))
                row["walk_end"][data.get("walk_end")] += 1
                if data.get("network_size_estimate"):
                    row["estimate"].append(data["network_size_estimate"])
                truth_live = true_closest(live, key, hosts.ids[fleet])
                if getattr(trace, "targets", None):  # our engine's traces name them
                    truth_listed = true_closest(listed, key, hosts.ids[fleet])
                    row["targets_on_true"].append(len(truth_live & set(trace.targets)))
                    row["targets_on_listed"].append(len(truth_listed & set(trace.targets)))
                    row["holders"].append(len(trace.holders))
                    row["holders_on_true"].append(len(truth_live & set(trace.holders)) / max(len(trace.holders), 1))
                for other in fleets:
                    if other == fleet:
                        continue
                    (found, rtrace), seconds, cpu = hosts.timed(hosts.strategies[other].find_first_provider, key)
                    theirs = stats[other]
                    if found is None:
                        theirs["not_found"] += 1
                    else:
                        theirs["ttfpr"].append(seconds)
                        theirs["ttfpr_cpu"].append(cpu)
                        theirs["ttfpr_rpcs"].append(rtrace.as_dict().get("rpc_total", 0))
                        path_rtt = (getattr(rtrace, "extra", None) or {}).get("path_rtt_s")
                        if path_rtt is not None:  # our engine's traces have it, other programs' do not
                            theirs["path_rtt"].append(path_rtt)
                        hosts.loop.run(hosts.strategies[other].forget, found)
                row["testbed_cpu"].append(shard_cpu(pids) - before)
                provided.append((fleet, key, truth_live))
            print(f"  round {round_no + 1}/{rounds} done", flush=True)
        if testbed.py_shards == len(testbed.shards):  # every peer can say what it holds
            time.sleep(LANDING_GRACE)  # stores and refills still running in the background settle
            for fleet, key, truth_live in provided:
                landed = {peer.hex() for batch in ray.get([shard.holders.remote(key) for shard in testbed.shards])
                          for peer in batch}
                stats[fleet]["landed"].append(len(landed))
                stats[fleet]["landed_on_true"].append(len(truth_live & landed))
    finally:
        hosts.stop()
        testbed.stop()
    return {fleet: summarise(values) for fleet, values in stats.items()}


def true_closest(peers, key: bytes, provider: bytes, k: int = 20) -> set[str]:
    """The testbed's truth: the k peers closest to ``key`` (the provider itself excluded)."""
    from parsec.kad import closest_peers, key_of

    return {p.peer_id.hex() for p in closest_peers([p for p in peers if p.peer_id != provider], key_of(key), k)}


def summarise(values: dict) -> dict:
    def mean(xs):
        return statistics.fmean(xs) if xs else None

    return {
        "provides": len(values["provide"]), "provide_p50_s": pct(values["provide"], 0.5),
        "provide_p90_s": pct(values["provide"], 0.9), "provide_rpcs_mean": mean(values["provide_rpcs"]),
        "provide_cpu_s_mean": mean(values["provide_cpu"]), "retrievals": len(values["ttfpr"]),
        "ttfpr_p50_s": pct(values["ttfpr"], 0.5), "ttfpr_p90_s": pct(values["ttfpr"], 0.9),
        "ttfpr_path_rtt_p50_s": pct(values["path_rtt"], 0.5),
        "ttfpr_rpcs_mean": mean(values["ttfpr_rpcs"]), "ttfpr_cpu_s_mean": mean(values["ttfpr_cpu"]),
        "targets_on_true_closest_p50": pct(values["targets_on_true"], 0.5),
        "targets_on_true_closest_listed_p50": pct(values["targets_on_listed"], 0.5),
        "holders_at_return_p50": pct(values["holders"], 0.5),
        "holders_final_p50": pct(values["landed"], 0.5),
        "holders_final_on_true_closest_p50": pct(values["landed_on_true"], 0.5),
        "holders_final_on_true_closest_min": min(values["landed_on_true"], default=None),
        "holders_on_true_live_fraction_p50": pct(values["holders_on_true"], 0.5),
        "walk_end": dict(values["walk_end"]),
        "network_size_estimate_p50": pct(values["estimate"], 0.5),
        "testbed_cpu_s_per_round": mean(values["testbed_cpu"]),
        "errors": values["errors"], "not_found": values["not_found"], "optprov_fell_back": values["fell_back"],
    }


def fmt(value, unit="") -> str:
    if value is None:
        return "-"
    return f"{value:.3f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def print_table(size: int, result: dict) -> None:
    print(f"\n{size} peers")
    head = (f"{'fleet':<9} {'prov p50':>9} {'p90':>7} {'rpcs':>5} {'cpu':>6} {'land':>5} {'on20':>5} {'sent':>5} "
            f"{'held':>5} {'ok%':>5}   "
            f"{'ttfpr p50':>9} {'p90':>7} {'path':>6} {'rpcs':>5} {'cpu':>6} {'n/f':>4} {'err':>4}")
    print(head)
    print("-" * len(head))
    for fleet, r in result.items():
        print(f"{fleet:<9} {fmt(r['provide_p50_s']):>9} {fmt(r['provide_p90_s']):>7} "
              f"{fmt(r['provide_rpcs_mean'] and round(r['provide_rpcs_mean'])):>5} {fmt(r['provide_cpu_s_mean']):>6} "
              f"{fmt(r['holders_final_p50']):>5} {fmt(r['holders_final_on_true_closest_p50']):>5} "
              f"{fmt(r['targets_on_true_closest_p50']):>5} {fmt(r['holders_at_return_p50']):>5} "
              f"{fmt(r['holders_on_true_live_fraction_p50'] and round(100 * r['holders_on_true_live_fraction_p50'])):>5}"
              f"   {fmt(r['ttfpr_p50_s']):>9} {fmt(r['ttfpr_p90_s']):>7} {fmt(r['ttfpr_path_rtt_p50_s']):>6} "
              f"{fmt(r['ttfpr_rpcs_mean'] and round(r['ttfpr_rpcs_mean'])):>5} {fmt(r['ttfpr_cpu_s_mean']):>6} "
              f"{r['not_found']:>4} {r['errors']:>4}")
    print(f"land: testbed peers holding the record {LANDING_GRACE:g} s after the last round (asked from the peers "
          "themselves); on20: of those, among the true 20 closest reachable peers (p50; target >= 18 for optprov); "
          "sent: peers the record was sent to by the time the caller was answered that are among the true 20; "
          "held: stores acknowledged when the caller was answered; ok%: of those, the share "
          "among the true 20 closest reachable peers; path: p50 of the round trips along the chain of peers "
          "that led to the first provider (a lower bound of TTFPR; our engine's fleets only)")
    default, stock, opt = result.get("default"), result.get("pylibp2p"), result.get("optprov")
    if default and stock and default["ttfpr_p50_s"] and stock["ttfpr_p50_s"]:
        print(f"default TTFPR p50 / pylibp2p TTFPR p50 = {default['ttfpr_p50_s'] / stock['ttfpr_p50_s']:.2f} "
              "(target <= 1)")
    if default and opt and default["provide_p50_s"] and opt["provide_p50_s"]:
        print(f"default provide p50 / optprov provide p50 = {default['provide_p50_s'] / opt['provide_p50_s']:.2f}x "
              "(target >= 5x once latency is emulated)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--fleets", default=",".join(FLEETS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="provides per fleet before measuring")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench-fleets.json"))
    parser.add_argument("--latency", default="off", help="'default' (public inter-region RTTs), a file, or 'off'")
    parser.add_argument("--unreachable", type=float, default=0.0,
                        help="share of peer ids that never answer (public DHT ≈0.45)")
    parser.add_argument("--stale-entries", type=float, default=None,
                        help="share of a table's entries that are such ids (default: the testbed's, 0.15, RFM 19; "
                             ">= --unreachable: every table lists every one)")
    args = parser.parse_args()

    import ray

    from parsec.demo import start_ray

    start_ray(os.environ.get("RAY_ADDRESS"))
    fleets = [f for f in args.fleets.split(",") if f]
    from parsec.config import NetworkSettings

    latency = NetworkSettings(latency_matrix=args.latency).latency_model()
    results = {}
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"testbed of {size} peers, fleets {', '.join(fleets)}, {args.rounds} rounds, "
                  f"latency {args.latency}, unreachable {args.unreachable:.0%}, stale entries "
                  f"{'default' if args.stale_entries is None else format(args.stale_entries, '.0%')}", flush=True)
            results[size] = run_size(size, fleets, args.rounds, args.warmup, args.shards, latency, args.unreachable,
                                     args.stale_entries)
            print_table(size, results[size])
            # after every size, so that a long run stopped later keeps what it measured
            args.json.write_text(json.dumps({"latency": args.latency, "unreachable": args.unreachable,
                                             "stale_entries": args.stale_entries,
                                             "results": results}, indent=2))
            print(f"\nwritten {args.json}")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
