"""A whole simulated measurement: build the network, join the servers, run the rounds.

``Simulation(settings)`` builds the population (``population.py``), the wire
(``network.py``), churn and one ``SimServer`` per fleet, region and index; ``join`` lets
every server join and warm up (first refresh, or the ``fullrt`` crawl); ``run`` starts one
scheduler loop per fleet (concurrently, as ProbeLab ran one scheduler per fleet) and hands
every round's records to a sink — ``parsec.store.parquet.ParquetSink``, the real runs'
writer, in ``simulate``. Everything random draws from generators seeded by
``settings.seed``: the same settings write the same records.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from parsec.kad import PeerRef
from parsec.model.latency import LatencyModel
from parsec.sim.churn import Churn
from parsec.sim.engine import EventLoop
from parsec.sim.network import SimNetwork, Transport
from parsec.sim.node import Deadlines, SharedCrawl, SimServer
from parsec.sim.population import ID_PREFIX, Population
from parsec.sim.report import fleet_summary, records_frame
from parsec.sim.rounds import FleetScheduler, RoundReport
from parsec.sim.settings import PUBLIC_POPULATION, SimSettings, parse_weights
from parsec.store.parquet import ParquetSink
from parsec.store.records import MeasurementRecord

Progress = Callable[[str], None]


class SimError(ValueError):
    """Settings the simulator cannot run with (unknown region, unreadable matrix…)."""


def latency_model(settings: SimSettings) -> LatencyModel:
    path = None if settings.latency_matrix == "default" else settings.latency_matrix
    try:
        return LatencyModel.load(path, jitter=settings.jitter, dial_rtts=settings.dial_rtts)
    except ValueError as error:
        raise SimError(str(error)) from None


def population_weights(settings: SimSettings, model: LatencyModel) -> list[float]:
    """Weights per matrix region of where the DHT's peers are (``settings.population``)."""
    if settings.population == "matrix":
        return list(model.weights)
    named = parse_weights(PUBLIC_POPULATION if settings.population == "public" else settings.population)
    unknown = sorted(set(named) - set(model.regions))
    if unknown:
        raise SimError(f"population names regions the matrix lacks: {', '.join(unknown)} "
                       f"(matrix regions: {', '.join(model.regions)})")
    return [named.get(region, 0.0) for region in model.regions]


def server_regions(settings: SimSettings, model: LatencyModel) -> list[str]:
    regions = settings.regions or [r for r, w in zip(model.regions, model.weights) if w > 0]
    unknown = [r for r in regions if r not in model.regions]
    if unknown:
        raise SimError(f"unknown region(s) {', '.join(unknown)}; the matrix has {', '.join(model.regions)}")
    return regions


@dataclass
class RunStats:
    """What a run cost and saw, for progress and reports."""

    build_s: float = 0.0
    join_s: float = 0.0
    rounds_s: float = 0.0
    virtual_s: float = 0.0
    events: int = 0
    rpcs: int = 0
    records: int = 0
    churn_leaves: int = 0
    churn_returns: int = 0


class Simulation:
    """A simulated public DHT with measured servers on it (see the module docstring)."""

    def __init__(self, settings: SimSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.say = progress or (lambda line: None)
        self.stats = RunStats()
        started = time.perf_counter()
        self.model = latency_model(settings)
        weights = population_weights(settings, self.model)
        regions = server_regions(settings, self.model)
        self.say(f"building {settings.peers:,} reachable peers + {settings.unreachable:.0%} unreachable ids "
                 f"({settings.stale_entries:.0%} of table entries; seed {settings.seed})")
        self.population = Population.build(
            settings.peers, settings.unreachable, k=settings.k, region_weights=weights,
            access_rtt=settings.access_rtt, access_sigma=settings.access_sigma, seed=settings.seed,
            stale_entries=settings.stale_entries,
        )  # fmt: skip
        self.loop = EventLoop()
        self.network = SimNetwork(self.loop, self.population, self.model,
                                  Transport(settings.dial_timeout, settings.connection_idle, settings.k,
                                            settings.dial_backoff, settings.read_timeout),
                                  random.Random(f"{settings.seed}/network"), unresponsive=settings.unresponsive,
                                  refused=settings.dial_refused)
        self.churn = Churn(self.loop, self.population, settings.churn_session, random.Random(f"{settings.seed}/churn"))
        self.rng = random.Random(f"{settings.seed}/run")
        deadlines = Deadlines(settings.rpc_timeout, settings.provide_timeout, settings.retrieve_timeout)
        crawl = SharedCrawl(self.network, settings.crawl_concurrency, seed=self.rng.getrandbits(64))
        self.servers: list[SimServer] = []
        for fleet in settings.fleets:
            for region in regions:
                for _ in range(settings.servers_per_region):
                    self.servers.append(SimServer(
                        self.network, node_id=len(self.servers) + 1, fleet=fleet, region=region,
                        region_index=self.model.index(region), me=self._identity(), deadlines=deadlines, crawl=crawl,
                        optprov_rules=settings.optprov_rules,
                    ))  # fmt: skip
        self.stats.build_s = time.perf_counter() - started
        self.say(f"network: {len(self.population):,} ids, {self.population.entries():,} table entries, "
                 f"{len(self.servers)} servers ({', '.join(settings.fleets)} × {len(regions)} regions) "
                 f"in {self.stats.build_s:.1f}s")

    def _identity(self) -> PeerRef:
        peer_id = ID_PREFIX + self.rng.randbytes(32)
        return PeerRef(peer_id, int.from_bytes(hashlib.sha256(peer_id).digest(), "big"))

    def bootstrap_peers(self) -> list[PeerRef]:
        """The same few reachable peers for every server, as the public bootstrap list."""
        population = self.population
        online = [i for i in population.reachable_indices if population.online[i]]
        return [population.refs[i] for i in self.rng.sample(online, min(self.settings.bootstrap_peers, len(online)))]

    def join(self) -> None:
        """Every server joins and warms up; then each keeps its table fresh in the background."""
        started = time.perf_counter()
        bootstrap = self.bootstrap_peers()
        joins = [self.loop.spawn(server.join(bootstrap)) for server in self.servers]
        if not self.loop.run(self.loop.all_of(joins)):
            raise RuntimeError("the servers' join did not finish: the event queue ran dry")
        for server in self.servers:
            self.loop.spawn(server.maintain())
        self.stats.join_s = time.perf_counter() - started
        sizes = ", ".join(f"{s.fleet}/{s.region}={s.policy.routing_table_size()}" for s in self.servers[:3])
        crawl = self.servers[0].shared_crawl.result if self.servers[0].shared_crawl else None
        crawled = f"; fullrt crawl reached {len(crawl.reachable):,} peers" if crawl is not None else ""
        self.say(f"servers joined and warmed up at t={self.loop.now:.0f}s (virtual) in {self.stats.join_s:.1f}s: "
                 f"table sizes {sizes}…{crawled}")

    def run(self, sink: Callable[[list[MeasurementRecord]], None]) -> RunStats:
        """Every fleet's rounds, concurrently; each round's records go to ``sink``."""
        settings = self.settings
        started = time.perf_counter()
        rounds_done = [0]
        total_rounds = settings.rounds * len(settings.fleets)

        def on_round(report: RoundReport) -> None:
            rounds_done[0] += 1
            self.stats.records += len(report.records)
            if report.records:
                sink(report.records)
            self.say(_round_line(report, rounds_done[0], total_rounds, self.loop.now))

        schedulers = []
        for number, fleet in enumerate(settings.fleets, start=1):
            servers = [s for s in self.servers if s.fleet == fleet]
            scheduler = FleetScheduler(self.loop, servers, scheduler_id=number, rounds=settings.rounds,
                                       interval=settings.interval, probes=settings.probes, start=settings.start,
                                       rng=random.Random(f"{settings.seed}/scheduler/{fleet}"), on_round=on_round)
            schedulers.append(self.loop.spawn(scheduler.run()))
        if not self.loop.run(self.loop.all_of(schedulers)):
            raise RuntimeError("the rounds did not finish: the event queue ran dry")
        stats = self.stats
        stats.rounds_s = time.perf_counter() - started
        stats.virtual_s = self.loop.now
        stats.events = self.loop.events
        stats.rpcs = self.network.rpcs
        stats.churn_leaves, stats.churn_returns = self.churn.leaves, self.churn.returns
        return stats


@dataclass
class Outcome:
    """What ``simulate`` did: the run's statistics, its summary, where the files are."""

    stats: RunStats
    summary: dict
    files: list[Path]


def simulate(settings, progress=None) -> Outcome:
    """Build, join, run every fleet's rounds and write the dataset (``settings.output``)."""
    simulation = Simulation(settings, progress)
    simulation.join()
    sink = None
    if settings.output is not None:
        sink = ParquetSink(settings.output, writer_id=f"sim-seed{settings.seed}", rotate_rows=10_000,
                           rotate_seconds=3600)
    records = []

    def write(batch) -> None:
        records.extend(batch)
        if sink is not None:
            sink.write(batch)

    try:
        stats = simulation.run(write)
    finally:
        if sink is not None:
            sink.close()
    return Outcome(stats, fleet_summary(records_frame(records)), [] if sink is None else sink.files_written)


def _round_line(report: RoundReport, done: int, total: int, now: float) -> str:
    head = f"round {done}/{total} {report.fleet} #{report.number} t={now:.0f}s"
    if report.skipped:
        return f"{head}: skipped ({report.skipped})"
    provide = next((r for r in report.records if r.kind == "provide"), None)
    retrievals = sorted(r.duration for r in report.records if r.kind == "retrieval" and r.error is None)
    misses = sum(1 for r in report.records if r.kind == "retrieval" and r.error is not None)
    text = f"{head}: provide {provide.duration:.2f}s from {provide.region}" if provide else head
    if provide is not None and provide.error:
        text += f" failed ({provide.error})"
    if retrievals:
        text += f", {len(retrievals)} retrievals median {retrievals[len(retrievals) // 2]:.2f}s"
    if misses:
        text += f", {misses} failed"
    return text
