"""A measured server in the simulator: a fleet's policy on a routing table it built by joining.

The counterpart of ``parsec.net.strategies`` + ``parsec.server.strategy_backend``, for any
engine strategy: its ``parsec.kad.fleets`` policy decides the provide machine, the seeds,
readiness, the join's upkeep and the maintenance schedule; this adapter carries them out on
the virtual clock. The server joins the honest way (lookup of its own key from bootstrap
peers, then the policy's ``join_upkeep``) and, unlike a real server, also runs its
maintenance schedule up to its first wait before it is measured (``default`` and ``optprov``:
the first refresh, so a simulated round starts with filled buckets). A provide or retrieval
yields a ``Measurement`` with the duration, error text and trace a real server's HTTP answer
carries — deadlines included (``provide_timeout``, ``retrieve_timeout``).

A server's identity is its own, not a population peer's, and no population table lists it
(21 servers among 25,000 peers would be ≈0.1 % of the entries): it asks, it is not asked.
Servers sit in AWS regions, so they add no access delay of their own to the matrix's RTTs
(which are AWS-to-AWS).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from parsec.kad import LookupResult, PeerRef, RoutingTable, key_of
from parsec.kad.constants import NOT_FOUND, NOT_READY, RPC_TIMEOUT, deadline_exceeded
from parsec.kad.crawl import CrawlResult
from parsec.kad.fleets import EngineFleet, FleetOptions, OptprovRules, Schedule, Upkeep, engine_fleet
from parsec.kad.fullrt import NotReady
from parsec.kad.path_bound import PathBound
from parsec.kad.trace import Trace, provide_error
from parsec.sim import driver
from parsec.sim.driver import path_rtt, start_lookup
from parsec.sim.engine import Future, Process
from parsec.sim.network import Endpoint, SimNetwork

__all__ = ["NOT_FOUND", "Deadlines", "Measurement", "SharedCrawl", "SimServer"]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One timed operation, as a server's HTTP answer reports it."""

    duration: float
    error: str | None
    rt_size: int
    trace: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Per-RPC and per-operation time limits (the server's settings)."""

    rpc: float = RPC_TIMEOUT
    provide: float = 180.0
    retrieve: float = 60.0


class SharedCrawl:
    """The ``fullrt`` crawl, run once and adopted by every ``fullrt`` server.

    Every server of the fleet would reach the same reachable set (every online reachable
    peer); crawling 25,000 peers seven times costs seven times the CPU for the same table.
    So the first server that needs a crawl runs the real ``Crawler``, and the others (and
    itself) adopt its result until the table is due for a refresh. The crawl's own
    duration is not measured by any round.
    """

    def __init__(self, network: SimNetwork, concurrency: int, seed: int) -> None:
        self.network = network
        self.concurrency = concurrency
        self.rng = random.Random(seed)
        self.result: CrawlResult | None = None
        self._running: Future | None = None

    def crawl(self, server: SimServer) -> Process:
        policy = server.policy
        if self._running is not None and not self._running.done:
            return (yield self._running)
        now = self.network.loop.now
        if self.result is not None and now - self.result.started_at < policy.options.crawl_interval:
            return self.result
        self._running = running = self.network.loop.future()
        crawler = policy.start_crawl(now, max_in_flight=self.concurrency, rng=self.rng)
        yield driver.run(self.network, server.client, crawler, None).finished
        self.result = crawler.result
        running.set(self.result)
        return self.result


class SimServer:
    """One server: ``id`` (as ``nodes_ecs.id``), ``fleet``, ``region``; see the module docstring."""

    def __init__(self, network: SimNetwork, *, node_id: int, fleet: str, region: str, region_index: int,
                 me: PeerRef, deadlines: Deadlines, crawl: SharedCrawl | None = None,
                 optprov_rules: OptprovRules = "parsec") -> None:
        self.id = node_id
        self.fleet = fleet
        self.region = region
        self.network = network
        self.deadlines = deadlines
        routing = RoutingTable(me, k=network.transport.k)
        self.policy: EngineFleet = engine_fleet(fleet, routing, FleetOptions(rpc_timeout=deadlines.rpc,
                                                                              optprov_rules=optprov_rules))
        self.client = Endpoint(me, region_index, routing=routing)
        self.shared_crawl = crawl
        self.joined = False
        self._schedule: Schedule | None = None
        self._step: float | Upkeep | None = None  # the schedule's next step, after join
        self.local_records: set[bytes] = set()

    @property
    def me(self) -> PeerRef:
        return self.client.me

    def ready(self) -> bool:
        return self.policy.ready(self.joined)

    # ------------------------------------------------------------- joining and upkeep

    def join(self, bootstrap: list[PeerRef]) -> Process:
        """Look up our own key from the bootstrap peers, then the policy's join upkeep
        (``fullrt``: the crawl), then the maintenance schedule up to its first wait
        (``default``/``optprov``: the first refresh), before the node is measured."""
        _, run = start_lookup(self.network, self.client, self.me.key, Trace("bootstrap"), seeds=bootstrap,
                              rpc_timeout=self.deadlines.rpc)
        yield run.finished
        self._track(run.machine.result)
        self.joined = len(self.policy.routing) > 0
        if self.policy.join_upkeep is not None:
            yield from self.upkeep(self.policy.join_upkeep)
        self._schedule = self.policy.maintenance()
        self._step = next(self._schedule)
        while isinstance(self._step, str):
            yield from self.upkeep(self._step)
            self._step = self._schedule.send(self.network.loop.now)

    def maintain(self) -> Process:
        """Forever: the rest of the policy's maintenance schedule (after ``join``)."""
        assert self._schedule is not None and self._step is not None, "join first"
        while True:
            if isinstance(self._step, str):
                yield from self.upkeep(self._step)
            else:
                yield self._step
            self._step = self._schedule.send(self.network.loop.now)

    def upkeep(self, upkeep: Upkeep) -> Process:
        """One upkeep of the schedule now: a refresh of the buckets, or the (shared) crawl."""
        if upkeep == "refresh":
            yield from self.refresh()
        else:
            yield from self.crawl()

    def _track(self, result: LookupResult) -> None:
        self.policy.track_lookup(result, self.network.loop.now)

    def refresh(self) -> Process:
        """A lookup per bucket (``parsec.net.driver.refresh_buckets``)."""
        trace = Trace("refresh")
        routing = self.policy.routing
        for key in self.policy.refresh_keys():
            if not routing:
                break
            target = key_of(key)
            _, run = start_lookup(self.network, self.client, target, trace, seeds=routing.closest(target, self.policy.k),
                                  rpc_timeout=self.deadlines.rpc)
            yield run.finished
            self._track(run.machine.result)

    def crawl(self) -> Process:
        assert self.shared_crawl is not None, "a crawling strategy needs the shared crawl"
        result: CrawlResult = yield from self.shared_crawl.crawl(self)
        self.policy.finish_crawl(result)

    # ------------------------------------------------------------- measured operations

    def provide(self, key: bytes) -> Process:
        """Provide the multihash ``key``; returns a ``Measurement`` when the caller would be
        answered (optimistic provide's remaining stores go on in the background)."""
        loop = self.network.loop
        started = loop.now
        target = key_of(key)
        trace = Trace("provide")
        try:
            op = self.policy.provide_operation(target, started)
        except NotReady:
            return Measurement(0.0, NOT_READY, self._rt_size(), None)
        self.local_records.add(key)
        extra = self.policy.provide_extra(started)  # the estimate the thresholds come from
        run = driver.run(self.network, self.client, op, target, driver.recorder(self.network, self.client, trace))
        which, _ = yield loop.first_of(run.answered, loop.timer(self.deadlines.provide))
        if which == 1:  # the HTTP deadline; the operation itself goes on in the background, as on a server
            return self._timed_out("provide", self.deadlines.provide)
        result = op.result
        if result.lookup is not None:
            self._track(result.lookup)
        trace.absorb_provide(result)
        error = provide_error(result)
        if error is None:
            trace.extra.update(extra)
        return Measurement(loop.now - started, error, self._rt_size(), None if error else trace.as_dict())

    def retrieve(self, key: bytes) -> Process:
        """Look for providers of ``key`` until the first record (TTFPR)."""
        loop = self.network.loop
        started = loop.now
        trace = Trace("retrieve")
        if key in self.local_records:  # go-libp2p-kad-dht answers from its own provider store first
            trace.extra["local"] = True
            return Measurement(0.0, None, self._rt_size(), trace.as_dict())
        target = key_of(key)
        bound = PathBound()
        lookup, run = start_lookup(self.network, self.client, target, trace, seeds=self.policy.seeds(target),
                                   goal="providers", rpc_timeout=self.deadlines.rpc, bound=bound)
        which, _ = yield loop.first_of(run.finished, loop.timer(self.deadlines.retrieve))
        if which == 1:
            run.cancel()
            return self._timed_out("retrieval", self.deadlines.retrieve)
        result = lookup.result
        trace.absorb(result)
        if result.providers:
            path = lookup.provider_path()
            trace.extra["path_rtt_s"] = round(path_rtt(self.network, self.client, lookup), 4)
            trace.extra["path_bound_s"] = bound.retrieval(path)  # as the testbed's, without jitter
            trace.extra["path_wait_s"] = bound.wait(path, started)
        error = None if result.providers else NOT_FOUND
        return Measurement(loop.now - started, error, self._rt_size(), trace.as_dict())

    def _timed_out(self, step: str, limit: float) -> Measurement:
        return Measurement(limit, deadline_exceeded(step, limit), self._rt_size(), None)

    def _rt_size(self) -> int:
        return self.policy.routing_table_size()
