"""Lookups and messages per reprovide cycle: classic provide per key vs the sweeping provider.

On the simulator's network (``parsec.sim.run.Simulation``: the default public-network
parameters — unreachable ids, churn, the latency matrix — with ``--peers`` reachable peers),
one population peer holds ``--cids`` keys and reprovides them once, each strategy on a fresh
simulation of the same seed:

* ``classic``: one ``parsec.kad.ClassicProvide`` per key (a lookup, then 20 ADD_PROVIDERs),
  ``--concurrency`` at a time, back to back — **compressed time**: go's classic reprovider
  runs them one after another over the cycle; the count of lookups and messages does not
  depend on how they are spaced.
* ``sweep``: ``parsec.kad.SweepCycle`` over a ``SweepSchedule`` planned from 4 lookups
  (``prefix_len_from_lookups``), every region in its slot of the real 22 h interval on the
  simulator's virtual clock (not compressed: virtual hours cost only the churn events), go's
  default workers (2 periodic, 1 burst, 1 shared). The keys are put in the schedule without a
  first provide (go ``AddToSchedule``), so the cycle measured is the first reprovide cycle
  from the estimated prefix length (a prefix that turns out to hold several regions is
  explored once; a region whose slot is later in the cycle than its parent's is reprovided
  again then, as in go).

``lookups_per_cycle`` counts lookups (sweep: exploration lookups + per-key fallback
lookups; the 4 planning lookups are not included); ``messages_per_cycle`` counts FIND_NODE
and ADD_PROVIDER requests; ``wall_s`` is this process's time for the cycle. Every pair of
``--peers`` and ``--cids`` is one run of each strategy:

    .venv/bin/python bench/sweep.py --peers 10000 --cids 1000 10000   # ≈ 1.5 min; bench/results-sweep.json
    .venv/bin/python bench/sweep.py --peers 10000 20000 60000 --cids 10000 100000   # the issue's sizes
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def simulation(peers: int, seed: int):
    from parsec.sim.run import Simulation
    from parsec.sim.settings import SimSettings
    return Simulation(SimSettings(peers=peers, seed=seed, fleets=["default"], output=None))


def provider_of(sim, rng: random.Random):
    from parsec.sim.workload import peer_endpoint
    population = sim.population
    index = rng.choice([i for i in population.reachable_indices if population.online[i]])
    client = peer_endpoint(sim.network, index)
    return index, client, (lambda key: population.closest(index, key, sim.network.transport.k))


def cids(count: int, seed: int) -> list[bytes]:
    rng = random.Random(f"{seed}/cids")
    return [b"\x12\x20" + rng.randbytes(32) for _ in range(count)]


def run_classic(peers: int, count: int, seed: int, concurrency: int) -> dict:
    from parsec.kad import ClassicProvide, key_of
    from parsec.sim.driver import run
    sim = simulation(peers, seed)
    _, client, seeds = provider_of(sim, random.Random(f"{seed}/provider"))
    loop, keys = sim.loop, [key_of(mh) for mh in cids(count, seed)]
    totals = {"lookups": 0, "find_node": 0, "add_provider": 0, "holders": 0}
    started = time.perf_counter()

    def worker(mine):
        for key in mine:
            op = ClassicProvide(key, seeds(key), now=loop.now, self_peer=client.me)
            yield run(sim.network, client, op, key).finished
            result = op.result
            totals["lookups"] += 1
            totals["find_node"] += result.rpcs.get("find_node", 0)
            totals["add_provider"] += result.rpcs.get("add_provider", 0)
            totals["holders"] += result.stores_ok

    virtual0 = loop.now
    workers = [loop.spawn(worker(keys[i::concurrency])) for i in range(concurrency)]
    if not loop.run(loop.all_of(workers)):
        raise RuntimeError("classic provides stalled")
    return {"strategy": "classic", "peers": peers, "cids": count, "lookups_per_cycle": totals["lookups"],
            "messages_per_cycle": totals["find_node"] + totals["add_provider"], "find_node": totals["find_node"],
            "add_provider": totals["add_provider"], "holders_per_key": round(totals["holders"] / count, 2),
            "virtual_s": round(loop.now - virtual0, 1), "wall_s": round(time.perf_counter() - started, 2)}


def run_sweep(peers: int, count: int, seed: int) -> dict:
    from parsec.kad import KEY_BITS, KeyPreimages
    from parsec.kad.sweep import RegionProvide
    from parsec.kad.sweep_schedule import SweepCycle, SweepSchedule, prefix_len_from_lookups
    from parsec.sim.driver import run
    from parsec.sim.workload import lookup_from
    sim = simulation(peers, seed)
    index, client, seeds = provider_of(sim, random.Random(f"{seed}/provider"))
    loop, rng = sim.loop, random.Random(f"{seed}/sweep")
    planning = [loop.spawn(lookup_from(sim.network, index, rng.getrandbits(KEY_BITS))) for _ in range(4)]
    loop.run(loop.all_of(planning))
    prefix_len = prefix_len_from_lookups([f.value.closest_known for f in planning])
    started = time.perf_counter()
    virtual0 = loop.now
    schedule = SweepSchedule(client.me.key, now=loop.now, prefix_len=prefix_len)
    schedule.add_keys(cids(count, seed), loop.now, provide=False)
    planned = len(schedule.due)
    preimages = KeyPreimages(rng=random.Random(f"{seed}/preimages"))

    def make(job, now):
        return RegionProvide(job.prefix, schedule.keystore, seeds, now=now, order=client.me.key, preimages=preimages,
                             kind=job.kind, self_peer=client.me)

    cycle = SweepCycle(schedule, make, now=loop.now, until=loop.now + schedule.interval)
    if not loop.run(run(sim.network, client, cycle, None).finished):
        raise RuntimeError("the sweep cycle stalled")
    result = cycle.result
    holders = [n for r in result.results for n in r.holders.values()]
    return {"strategy": "sweep", "peers": peers, "cids": count, "lookups_per_cycle": result.lookups,
            "messages_per_cycle": result.find_node + result.add_provider, "find_node": result.find_node,
            "add_provider": result.add_provider, "holders_per_key": round(sum(holders) / max(1, len(holders)), 2),
            "prefix_len": prefix_len, "prefixes_planned": planned, "jobs": len(result.results),
            "individual_jobs": sum(r.individual for r in result.results), "keys_provided": result.keys,
            "share_reached": round(result.share_reached, 4), "failed_jobs": len(result.failed),
            "scheduled_after": len(schedule.due), "virtual_s": round(loop.now - virtual0, 1),
            "wall_s": round(time.perf_counter() - started, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[5000])
    parser.add_argument("--cids", type=int, nargs="+", default=[2000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=10, help="classic provides at a time")
    parser.add_argument("--json", default=str(Path(__file__).with_name("results-sweep.json")))
    args = parser.parse_args()
    runs = []
    for peers in args.peers:
        for count in args.cids:
            for strategy in ("classic", "sweep"):
                row = run_classic(peers, count, args.seed, args.concurrency) if strategy == "classic" \
                    else run_sweep(peers, count, args.seed)
                runs.append(row)
                print(json.dumps(row), flush=True)
            classic, sweep = runs[-2], runs[-1]
            print(f"{peers:,} peers, {count:,} cids: sweep {sweep['lookups_per_cycle']:,} lookups = "
                  f"{sweep['lookups_per_cycle'] / classic['lookups_per_cycle']:.1%} of classic's "
                  f"{classic['lookups_per_cycle']:,}; messages {sweep['messages_per_cycle']:,} vs "
                  f"{classic['messages_per_cycle']:,}", flush=True)
    command = "bench/sweep.py " + " ".join(sys.argv[1:])
    Path(args.json).write_text(json.dumps({"runs": runs, "command": command.strip()}, indent=1) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
