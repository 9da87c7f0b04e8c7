"""Fleets side by side on one testbed: provide and TTFPR per fleet, RPCs and CPU per
operation, and whether records land on the true 20 closest peers.

Real parts: testbed shards are Ray actors of py-libp2p peers (RAY_ADDRESS or a private
local cluster); one libp2p host per fleet runs in this process, joined the honest way.
Operations run one at a time (concurrent operations in one process measure queueing,
design.md). Each round one fleet provides a fresh key and every other fleet looks it up, so
a run of R rounds with F fleets gives each fleet n = R provides and up to R x (F - 1)
retrievals. The default ``--rounds 30`` gives n >= 30 in every cell (provides included),
which is what the docs require of a headline figure.

Kept in the JSON: every operation (``samples``: duration, RPCs, CPU and, when the fleet's
trace has them, ``path_rtt_s``, ``path_bound_s``, ``host_lag_ms``), not-found and failed
operations counted per fleet, and per fleet the p50/p90 of provide and TTFPR (successes
only, numpy's linear quantiles as ``parsec.analysis.stats``) with a seeded percentile
bootstrap 95 % interval, and the speed-ups against ``default`` (its p50 / the fleet's p50,
provide and TTFPR) with theirs. ``bench/tables.py`` turns the file into docs/results.md.

How long a run takes: operations run one after another, so per size it is about
rounds x (the fleets' provide times + (F - 1) x their TTFPRs), plus the testbed's start,
the warm-up provides and 20 s of landing grace. On loopback (no ``--latency``) a round is a
few seconds. With ``--latency default --unreachable 0.45`` classic provide waits out a 5 s
dial timeout in most walks (≈16-17 s a provide at 200 and 1,000 peers, docs/results.md),
so ``default,optprov,fullrt`` take ≈20 s a round, ≈10 min per size at 30 rounds;
``pylibp2p`` waits out its own timeouts in every lookup and adds ≈1 min a round.

    .venv/bin/python bench/fleets.py --sizes 200,1000 --json fleets.json
    .venv/bin/python bench/fleets.py --latency default --unreachable 0.45 --fleets default,optprov,fullrt
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import time

from collections import Counter

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from parsec.analysis import stats  # noqa: E402
from parsec.kad.fleets import STRATEGIES  # noqa: E402

REGION = "eu-central-1"
"""Where every fleet's host sits under latency emulation: one place for all, so that a
fleet's times do not depend on where its random identity happened to land."""
FLEETS = tuple(name for name, spec in STRATEGIES.items() if spec.dht in ("parsec-kad", "py-libp2p"))
"""The fleets a bench runs in its own process: our engine's and py-libp2p's."""
BASELINE = "default"
"""The fleet every speed-up is measured against (its p50 / the fleet's p50)."""
ROUNDS = 30
"""Default rounds: n = 30 provides per fleet, the fewest the docs accept for a headline cell."""
MIN_N = 30
BOOTSTRAP = {"n_boot": 2000, "seed": 0, "level": 0.95}
"""Every interval of this bench and of bench/tables.py: seeded, so the same samples give the
same interval on every run."""
TRACE_FIELDS = ("path_rtt_s", "path_bound_s", "host_lag_ms")
"""Trace fields kept per operation when the fleet's trace has them (our engine's do)."""
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
             unreachable: float = 0.0, stale_entries: float | None = None, region: str | None = None) -> dict:
    from parsec.config import TestbedSettings

    # no churn: the truth (the k closest peers) must not move while a round is measured
    stale = {} if stale_entries is None else {"stale_entries": stale_entries}
    return run_fleets(TestbedSettings(peers=size, processes=shards, unreachable=unreachable, churn_session=0, **stale),
                      fleets, rounds, warmup, latency, name=f"bench-fleets-{size}", region=region)


def run_fleets(settings, fleets: list[str], rounds: int, warmup: int, latency=None, name: str = "bench-fleets",
               region: str | None = REGION) -> dict:
    """Every fleet on one testbed (``settings``): each round one fleet provides a fresh key
    and every other fleet looks it up; per-fleet statistics (``summarise``) with every
    operation's sample kept. Under latency emulation every engine fleet's host sits in
    ``region`` (the go and js programs draw their own identities), so fleets are compared
    from the same place."""
    import ray

    from parsec.cluster.deploy import start_testbed
    from parsec.kad import PeerRef
    from parsec.cids import cid_v0_for
    from parsec.server.bootstrap import parse_bootstrap

    protocol = "/ipfs/kad/1.0.0"
    testbed = start_testbed(settings, protocol, name=name, progress=lambda line: print(f"  {line}", flush=True),
                            latency=latency)
    pids = ray.get([shard.__ray_call__.remote(lambda self: os.getpid()) for shard in testbed.shards])
    from parsec.net.local import LocalFleets

    hosts = LocalFleets(fleets, protocol_id=protocol, latency=latency, region=region, name="bench-fleets")
    stats_ = {fleet: {"provide": [], "ttfpr": [], "provide_errors": [], "ttfpr_errors": [], "not_found": [],
                      "targets_on_true": [], "targets_on_listed": [], "holders": [], "holders_on_true": [],
                      "landed": [], "landed_on_true": [], "walk_end": Counter(), "estimate": [],
                      "fell_back": 0, "testbed_cpu": []} for fleet in fleets}
    try:
        boot = parse_bootstrap(testbed.bootstrap_addrs(8))
        for fleet, strategy in list(hosts.strategies.items()):
            try:
                _, seconds = hosts.join(fleet, boot)
            except Exception as error:  # a fleet that cannot join is reported, not fatal
                print(f"  {fleet}: join failed ({error}); left out", flush=True)
                fleets = [f for f in fleets if f != fleet]
                stats_.pop(fleet)
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
                row = stats_[fleet]
                try:
                    trace, seconds, cpu = hosts.timed(hosts.strategies[fleet].provide, key)
                except Exception as error:  # a failed provide is data
                    row["provide_errors"].append({"round": round_no, "error": short(error)})
                    print(f"  {fleet} provide failed: {error}", flush=True)
                    continue
                data = trace.as_dict()
                row["provide"].append(sample(seconds, cpu, data, round=round_no))
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
                    theirs = stats_[other]
                    try:
                        (found, rtrace), seconds, cpu = hosts.timed(hosts.strategies[other].find_first_provider, key)
                    except Exception as error:  # a failed retrieval is data too
                        theirs["ttfpr_errors"].append({"round": round_no, "provider": fleet, "error": short(error)})
                        print(f"  {other} retrieval failed: {error}", flush=True)
                        continue
                    one = sample(seconds, cpu, rtrace.as_dict(), round=round_no, provider=fleet)
                    if found is None:
                        theirs["not_found"].append(one)
                    else:
                        theirs["ttfpr"].append(one)
                        hosts.loop.run(hosts.strategies[other].forget, found)
                row["testbed_cpu"].append(shard_cpu(pids) - before)
                provided.append((fleet, key, truth_live))
            print(f"  round {round_no + 1}/{rounds} done", flush=True)
        if testbed.py_shards == len(testbed.shards):  # every peer can say what it holds
            time.sleep(LANDING_GRACE)  # stores and refills still running in the background settle
            for fleet, key, truth_live in provided:
                landed = {peer.hex() for batch in ray.get([shard.holders.remote(key) for shard in testbed.shards])
                          for peer in batch}
                stats_[fleet]["landed"].append(len(landed))
                stats_[fleet]["landed_on_true"].append(len(truth_live & landed))
    finally:
        hosts.stop()
        testbed.stop()
    return summarise_all(stats_)


def short(error: BaseException, limit: int = 200) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + "…"


def sample(seconds: float, cpu: float, trace: dict, **where) -> dict:
    """One operation as kept in the JSON: wall seconds, RPCs, CPU seconds of this process,
    the trace fields of ``TRACE_FIELDS`` it has, and where it was measured."""
    one = {"duration_s": round(seconds, 6), "rpcs": int(trace.get("rpc_total") or 0), "cpu_s": round(cpu, 6)}
    for name in TRACE_FIELDS:
        value = trace.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            one[name] = value
    return {**one, **where}


def true_closest(peers, key: bytes, provider: bytes, k: int = 20) -> set[str]:
    """The testbed's truth: the k peers closest to ``key`` (the provider itself excluded)."""
    from parsec.kad import closest_peers, key_of

    return {p.peer_id.hex() for p in closest_peers([p for p in peers if p.peer_id != provider], key_of(key), k)}


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def timing(samples: dict[str, dict], boot: dict | None = None, baseline: str = BASELINE) -> dict[str, dict]:
    """Per fleet, from its kept samples (``{"provide": [...], "ttfpr": [...]}``, successes
    only): n, p50 and p90 of provide and TTFPR durations each with a bootstrap interval
    (``stats.Interval``), and, for every fleet but ``baseline``, the speed-ups
    ``{"provide_p50", "ttfpr_p50"}`` (``stats.Ratio``: baseline's p50 / the fleet's). The one
    place these statistics are computed: this bench's JSON and bench/tables.py both call it."""
    boot = {**BOOTSTRAP, **(boot or {})}

    def durations(fleet: str, kind: str) -> list[float]:
        return [one["duration_s"] for one in samples[fleet].get(kind, [])]

    out = {}
    for fleet in samples:
        row = {kind: {"n": len(durations(fleet, kind)),
                      **{stats.qname(q): stats.bootstrap_quantile(durations(fleet, kind), q=q, **boot)
                         for q in (0.5, 0.9)}}
               for kind in ("provide", "ttfpr")}
        if baseline in samples and fleet != baseline:
            row["speedup"] = {"provide_p50": stats.bootstrap_ratio(durations(baseline, "provide"),
                                                                   durations(fleet, "provide"), q=0.5, **boot),
                              "ttfpr_p50": _same_records_speedup(samples[baseline], samples[fleet], boot)}
        out[fleet] = row
    return out


def _same_records_speedup(baseline: dict, fleet: dict, boot: dict) -> stats.Ratio:
    """TTFPR p50 of ``baseline`` ÷ that of ``fleet`` over the records both looked up (a fleet
    never looks up its own, and records differ in how many live peers hold them: a classic
    provide leaves fewer than a full-table one), the pairs resampled together. Samples
    without ``round`` and ``provider`` (older files) are compared as two samples."""
    def by_record(kept: dict) -> dict:
        return {(one["round"], one["provider"]): one["duration_s"] for one in kept.get("ttfpr", [])
                if "round" in one and "provider" in one}

    mine, theirs = by_record(baseline), by_record(fleet)
    common = sorted(set(mine) & set(theirs))
    if not common:
        return stats.bootstrap_ratio([one["duration_s"] for one in baseline.get("ttfpr", [])],
                                     [one["duration_s"] for one in fleet.get("ttfpr", [])], q=0.5, **boot)
    return stats.bootstrap_paired_ratio([mine[k] for k in common], [theirs[k] for k in common], q=0.5, **boot)


def summarise_all(values_by_fleet: dict[str, dict], boot: dict | None = None) -> dict[str, dict]:
    """Every fleet's summary (``summarise``), with the samples and the speed-ups against
    ``BASELINE``."""
    samples = {fleet: {"provide": values["provide"], "ttfpr": values["ttfpr"]}
               for fleet, values in values_by_fleet.items()}
    timed = timing(samples, boot)
    return {fleet: summarise(values, timed[fleet]) for fleet, values in values_by_fleet.items()}


def summarise(values: dict, timed: dict) -> dict:
    def mean(xs):
        return statistics.fmean(xs) if xs else None

    def field(kind: str, name: str) -> list[float]:
        return [one[name] for one in values[kind] if one.get(name) is not None]

    def p50(xs):
        return _finite(stats.quantiles(xs, (0.5,))["p50"]) if xs else None

    def ci(interval: stats.Interval) -> list | None:
        return None if math.isnan(interval.low) else [interval.low, interval.high]

    summary = {"provides": timed["provide"]["n"]}
    for kind, name in (("provide", "provide"), ("ttfpr", "ttfpr")):
        for q in ("p50", "p90"):
            summary[f"{name}_{q}_s"] = _finite(timed[kind][q].point)
            summary[f"{name}_{q}_ci95_s"] = ci(timed[kind][q])
        summary[f"{name}_rpcs_mean"] = mean(field(kind, "rpcs"))
        summary[f"{name}_cpu_s_mean"] = mean(field(kind, "cpu_s"))
        if kind == "provide":
            summary["retrievals"] = timed["ttfpr"]["n"]
    summary.update({
        "ttfpr_path_rtt_p50_s": p50(field("ttfpr", "path_rtt_s")),
        "ttfpr_path_bound_p50_s": p50(field("ttfpr", "path_bound_s")),
        "ttfpr_host_lag_ms_p50": p50(field("ttfpr", "host_lag_ms")),
        "provide_host_lag_ms_p50": p50(field("provide", "host_lag_ms")),
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
        "not_found": len(values["not_found"]), "provide_errors": len(values["provide_errors"]),
        "ttfpr_errors": len(values["ttfpr_errors"]),
        "errors": len(values["provide_errors"]) + len(values["ttfpr_errors"]),
        "optprov_fell_back": values["fell_back"],
    })
    if "speedup" in timed:
        summary["speedup_vs_default"] = {
            name: {"ratio": _finite(ratio.point), "ci95": None if math.isnan(ratio.low) else [ratio.low, ratio.high],
                   "n_baseline": ratio.n_baseline, "n": ratio.n_other}
            for name, ratio in timed["speedup"].items()}
    summary["samples"] = {"provide": values["provide"], "ttfpr": values["ttfpr"], "not_found": values["not_found"],
                          "provide_errors": values["provide_errors"], "ttfpr_errors": values["ttfpr_errors"]}
    return summary


def fmt(value, unit="") -> str:
    if value is None:
        return "-"
    return f"{value:.3f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def fmt_ci(value, ci) -> str:
    """``0.384 [0.31-0.52]``; ``-`` without a value."""
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else "")


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
          "that led to the first provider (a lower bound of TTFPR; our engine's fleets only); "
          "n/f: retrievals that found no provider; err: failed provides + failed retrievals")
    level = f"{BOOTSTRAP['level']:.0%}"
    print(f"\nwith n and bootstrap {level} intervals [low-high] (seconds; speed-up = {BASELINE} p50 / fleet p50; TTFPR over the records both looked up)")
    head = (f"{'fleet':<9} {'n':>4} {'provide p50':>22} {'p90':>22} {'speed-up':>22}   "
            f"{'n':>4} {'TTFPR p50':>22} {'p90':>22} {'speed-up':>22}")
    print(head)
    print("-" * len(head))
    for fleet, r in result.items():
        up = r.get("speedup_vs_default") or {}
        prov, ttfpr = up.get("provide_p50") or {}, up.get("ttfpr_p50") or {}
        low = [f"{'*' if n < MIN_N else ''}{n}" for n in (r["provides"], r["retrievals"])]
        print(f"{fleet:<9} {low[0]:>4} {fmt_ci(r['provide_p50_s'], r.get('provide_p50_ci95_s')):>22} "
              f"{fmt_ci(r['provide_p90_s'], r.get('provide_p90_ci95_s')):>22} "
              f"{fmt_ci(prov.get('ratio'), prov.get('ci95')):>22}   {low[1]:>4} "
              f"{fmt_ci(r['ttfpr_p50_s'], r.get('ttfpr_p50_ci95_s')):>22} "
              f"{fmt_ci(r['ttfpr_p90_s'], r.get('ttfpr_p90_ci95_s')):>22} "
              f"{fmt_ci(ttfpr.get('ratio'), ttfpr.get('ci95')):>22}")
    print(f"* n < {MIN_N}: below what the docs accept for a headline figure")


def dumps(doc: dict) -> str:
    """JSON with two-space indentation, each kept sample on one line (files stay readable
    and diffs small)."""
    inline: dict[str, str] = {}

    def mark(obj):
        if isinstance(obj, dict):
            if "duration_s" in obj or ("error" in obj and "round" in obj):  # one operation
                token = f"@@sample{len(inline)}@@"
                inline[token] = json.dumps(obj)
                return token
            return {key: mark(value) for key, value in obj.items()}
        if isinstance(obj, list):
            if obj and all(isinstance(value, (int, float)) for value in obj):  # an interval, a list of numbers
                token = f"@@sample{len(inline)}@@"
                inline[token] = json.dumps(obj)
                return token
            return [mark(value) for value in obj]
        return obj

    text = json.dumps(mark(doc), indent=2)
    for token, line in inline.items():
        text = text.replace(f'"{token}"', line, 1)
    return text + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--fleets", default=",".join(FLEETS))
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"each fleet provides once a round (default {ROUNDS}: n >= {MIN_N} in every cell)")
    parser.add_argument("--warmup", type=int, default=3, help="provides per fleet before measuring")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench-fleets.json"))
    parser.add_argument("--latency", default="off", help="'default' (public inter-region RTTs), a file, or 'off'")
    parser.add_argument("--unreachable", type=float, default=0.0,
                        help="share of peer ids that never answer (public DHT ≈0.45)")
    parser.add_argument("--region", default=REGION,
                        help=f"under latency emulation, the region of every fleet's host (default {REGION})")
    parser.add_argument("--stale-entries", type=float, default=None,
                        help="share of a table's entries that are such ids (default: the testbed's, 0.15, RFM 19; "
                             ">= --unreachable: every table lists every one)")
    args = parser.parse_args()

    import ray

    from parsec.cluster.connect import start_ray

    start_ray(os.environ.get("RAY_ADDRESS"))
    fleets = [f for f in args.fleets.split(",") if f]
    from parsec.config import NetworkSettings

    latency = NetworkSettings(latency_matrix=args.latency).latency_model()
    results = {}
    command = command_line()
    started = time.monotonic()
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"testbed of {size} peers, fleets {', '.join(fleets)}, {args.rounds} rounds, "
                  f"latency {args.latency}, unreachable {args.unreachable:.0%}, stale entries "
                  f"{'default' if args.stale_entries is None else format(args.stale_entries, '.0%')}", flush=True)
            results[size] = run_size(size, fleets, args.rounds, args.warmup, args.shards, latency, args.unreachable,
                                     args.stale_entries, args.region)
            print_table(size, results[size])
            # after every size, so that a long run stopped later keeps what it measured
            args.json.write_text(dumps({"command": command, "latency": args.latency, "unreachable": args.unreachable,
                                        "stale_entries": args.stale_entries, "rounds": args.rounds,
                                        "region": args.region if latency is not None else None,
                                        "warmup": args.warmup, "shards": args.shards, "bootstrap": BOOTSTRAP,
                                        "wall_s": round(time.monotonic() - started, 1), "results": results}))
            print(f"\nwritten {args.json}")
    finally:
        ray.shutdown()
    return 0


def command_line() -> str:
    """How this run was started, as the docs print it to reproduce it."""
    argv = list(sys.argv)
    with contextlib.suppress(ValueError):
        argv[0] = str(Path(argv[0]).resolve().relative_to(Path(__file__).resolve().parents[1]))
    return ".venv/bin/python " + shlex.join(argv)


if __name__ == "__main__":
    sys.exit(main())
