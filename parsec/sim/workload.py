"""Lookups issued by the simulated DHT's own peers: the benchmark's and the tests' workload.

A population peer looks a key up as any DHT client does: seeded with the k closest entries
of its own table, driven by the engine's ``Lookup`` over the simulated wire. ``run_lookups``
keeps ``concurrency`` of them in flight (a busy network, and a short virtual run) until
``count`` have finished, and returns their results.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from parsec.kad import KEY_BITS, RPC_TIMEOUT, Key, LookupResult
from parsec.kad.trace import Trace
from parsec.sim.driver import start_lookup
from parsec.sim.engine import Process
from parsec.sim.network import Endpoint, SimNetwork


def peer_endpoint(network: SimNetwork, index: int) -> Endpoint:
    """Population peer ``index`` as a requester (its table is static: it learns nothing)."""
    population = network.population
    return Endpoint(population.refs[index], population.region[index], population.access[index])


def lookup_from(network: SimNetwork, index: int, target: Key, *, goal: str = "closest",
                rpc_timeout: float = RPC_TIMEOUT) -> Process:
    """One lookup of ``target`` by population peer ``index``; returns its ``LookupResult``."""
    client = peer_endpoint(network, index)
    seeds = network.population.closest(index, target, network.transport.k)
    lookup, run = start_lookup(network, client, target, Trace("lookup"), seeds=seeds, goal=goal,
                               rpc_timeout=rpc_timeout)
    yield run.finished
    return lookup.result


def run_lookups(network: SimNetwork, count: int, *, concurrency: int = 1, rng: random.Random,
                on_done: Callable[[int], None] | None = None) -> list[tuple[int, LookupResult]]:
    """``count`` closest-peers lookups of random keys from random online reachable peers,
    ``concurrency`` at a time; ``(origin index, result)`` in completion order."""
    loop, population = network.loop, network.population
    results: list[tuple[int, LookupResult]] = []
    issued = [0]

    def worker() -> Process:
        while issued[0] < count:
            issued[0] += 1
            online = population.reachable_indices
            origin = rng.choice(online)
            while not population.online[origin]:
                origin = rng.choice(online)
            result = yield loop.spawn(lookup_from(network, origin, rng.getrandbits(KEY_BITS)))
            results.append((origin, result))
            if on_done is not None:
                on_done(len(results))

    workers = [loop.spawn(worker()) for _ in range(max(1, min(concurrency, count)))]
    if not loop.run(loop.all_of(workers)):
        raise RuntimeError("lookups stalled: the event queue ran dry before they finished")
    return results
