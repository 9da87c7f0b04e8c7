"""The strategy registry, and the engine's strategies as pure policy.

A fleet is a free-text label (interface.md, "Fleets"); what a server of it does is its
**strategy**, a setting. ``STRATEGIES`` is the one list of them: every other place (the
settings' validation and help, the simulator, the benches, the libp2p side) derives names
from it. A strategy either runs on our engine — then ``policy`` is the class below that
decides, over a node's state (its ``RoutingTable``, estimator, pool, full table), everything
that is the same whatever carries the messages — or another implementation does the DHT
work (``dht`` says which) and ``parsec.net`` runs it.

What a policy decides, and the drivers' adapters (``parsec.net.strategies``,
``parsec.sim.node``) carry out with their own sending, timing and waiting:

- **join**: a lookup of the node's own key from the bootstrap peers (fed to
  ``track_lookup``), then ``join_upkeep`` if the node is not ready without it;
- **maintenance**: ``maintenance()`` is a schedule — a generator that yields seconds to
  wait or an upkeep to run (``"refresh"``: a lookup per bucket, ``refresh_keys``;
  ``"crawl"``: ``start_crawl`` … ``finish_crawl``) and is sent the time after each step;
- **provide / retrieve**: ``provide_operation`` (the machine) and ``provide_extra`` (trace
  fields), ``seeds`` (where a lookup starts), ``ready``;
- **estimator feeding**: ``track_lookup`` with every completed closest-peers lookup.

The engine's strategies:

- ``default``: classic provide (lookup of the k closest, ADD_PROVIDER to all), lookups
  seeded from the k closest of the routing table; alpha=10, beta=3, k=20.
- ``optprov``: a network-size estimator fed by every completed closest-peers lookup;
  optimistic provide with its thresholds, the stall timeout and a background pool of 60
  shared by the node's provides.
- ``fullrt``: a crawled table of the whole network; provides go straight to its k closest
  (``NotReady`` before the first crawl); lookups are seeded from it.

Adding a strategy: a policy class (a subclass of ``EngineFleet``) and one ``STRATEGIES``
entry.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .constants import ALPHA, BETA, REFRESH_CPLS, REFRESH_PERIOD, RPC_TIMEOUT
from .crawl import Crawler, CrawlResult, random_key_bytes_with_cpl
from .estimator import NetworkSizeEstimator, bucket_fill_for
from .fullrt import FULLRT_CRAWL_INTERVAL, FullRoutingTable
from .keyspace import Key, PeerRef
from .lookup_types import LookupResult
from .optimistic import OPTPROV_STALL_TIMEOUT, OptimisticProvide
from .provide import ClassicProvide, ProvideOperation
from .routing import RoutingTable
from .stores import BackgroundPool

Upkeep = Literal["refresh", "crawl"]
Schedule = Generator["float | Upkeep", float, None]
"""A maintenance schedule: yields seconds to wait or an upkeep to run; sent the time (the
driver's clock) after each step."""

OptprovRules = Literal["parsec", "go"]


def refresh_keys(local: Key, cpls: int = REFRESH_CPLS) -> list[bytes]:
    """The keys a routing-table refresh looks up: one random key per common-prefix length
    ``0..cpls-1`` with the local key (as go-libp2p-kad-dht's refresh), the same ones on
    every refresh of a node."""
    rng = random.Random(local)
    return [random_key_bytes_with_cpl(local, cpl, rng) for cpl in range(cpls)]


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What a server's settings say about its strategy's policy (one object for all)."""

    rpc_timeout: float = RPC_TIMEOUT
    crawl_interval: float = FULLRT_CRAWL_INTERVAL  # fullrt: seconds between crawls (start to start)
    optprov_rules: OptprovRules = "parsec"  # optprov: parsec's rules or go-libp2p-kad-dht's


class EngineFleet:
    """``default``: classic provide, lookups from the routing table."""

    name: ClassVar[str] = "default"
    provide_strategy: ClassVar[str] = "classic"
    join_upkeep: ClassVar[Upkeep | None] = None
    """What a join runs after its bootstrap lookup before the node may be ready."""

    def __init__(self, routing: RoutingTable, options: FleetOptions = FleetOptions()) -> None:
        self.routing = routing
        self.k = routing.k
        self.me = routing.local
        self.options = options
        self.rpc_timeout = options.rpc_timeout
        self.estimator: NetworkSizeEstimator | None = None

    def describe(self, protocol: str) -> dict[str, Any]:
        """What this strategy's DHT client is: name, provide machine, parameters."""
        return {"strategy": self.name, "provide": self.provide_strategy, "dht": "parsec-kad",
                "alpha": ALPHA, "beta": BETA, "k": self.k, "protocol": protocol}

    def routing_table_size(self) -> int:
        return len(self.routing)

    def ready(self, joined: bool) -> bool:
        """Whether the node can measure, given whether it has joined the DHT."""
        return joined

    def maintenance(self) -> Schedule:
        """Refresh the buckets now (far buckets fill), then every ``REFRESH_PERIOD``."""
        while True:
            yield "refresh"
            yield REFRESH_PERIOD

    def refresh_keys(self) -> list[bytes]:
        return refresh_keys(self.me.key)

    def start_crawl(self, now: float, **options: Any) -> Crawler:
        raise ValueError(f"strategy {self.name} does not crawl")

    def finish_crawl(self, result: CrawlResult) -> None:
        raise ValueError(f"strategy {self.name} does not crawl")

    def seeds(self, target: Key) -> list[PeerRef]:
        """Where a lookup of ``target`` starts: the k closest of the routing table (go)."""
        return self.routing.closest(target, self.k)

    def provide_operation(self, target: Key, now: float) -> ProvideOperation:
        return ClassicProvide(target, self.seeds(target), now=now, k=self.k, rpc_timeout=self.rpc_timeout,
                              self_peer=self.me)

    def provide_extra(self, now: float) -> dict[str, Any]:
        """Strategy-specific fields for a provide's trace, read before the provide."""
        return {}

    def track_lookup(self, result: LookupResult, now: float) -> None:
        """A completed closest-peers lookup is a data point for the network-size estimate
        (if the strategy keeps one), weighted by how full the routing-table bucket of its
        key is (as go weighs it)."""
        if self.estimator is not None:
            self.estimator.track_lookup(result, now, bucket_fill_for(self.routing, result.target, result.closest))


class OptimisticFleet(EngineFleet):
    """``optprov``: optimistic provide with a network-size estimator (pool of 60 shared)."""

    name: ClassVar[str] = "optprov"
    provide_strategy: ClassVar[str] = "optimistic"

    def __init__(self, routing: RoutingTable, options: FleetOptions = FleetOptions()) -> None:
        if options.optprov_rules not in ("parsec", "go"):
            raise ValueError(f"unknown optimistic-provide rules {options.optprov_rules!r}")
        super().__init__(routing, options)
        self.estimator = NetworkSizeEstimator(k=self.k)
        self.pool = BackgroundPool()
        self.rules: OptprovRules = options.optprov_rules

    def provide_operation(self, target: Key, now: float) -> ProvideOperation:
        assert self.estimator is not None
        return OptimisticProvide(target, self.seeds(target), now=now, k=self.k, rpc_timeout=self.rpc_timeout,
                                 self_peer=self.me, estimator_thresholds=self.estimator.thresholds(now),
                                 pool=self.pool, stall_timeout=OPTPROV_STALL_TIMEOUT, rules=self.rules)

    def provide_extra(self, now: float) -> dict[str, Any]:
        assert self.estimator is not None
        estimate = self.estimator.estimate(now)
        return {"network_size_estimate": round(estimate) if estimate else None}


class FullTableFleet(EngineFleet):
    """``fullrt``: a crawled table of the whole network, re-crawled every ``crawl_interval``."""

    name: ClassVar[str] = "fullrt"
    provide_strategy: ClassVar[str] = "direct"
    join_upkeep: ClassVar[Upkeep | None] = "crawl"

    def __init__(self, routing: RoutingTable, options: FleetOptions = FleetOptions()) -> None:
        super().__init__(routing, options)
        self.table = FullRoutingTable(k=self.k, refresh_interval=options.crawl_interval, self_peer=self.me)

    def describe(self, protocol: str) -> dict[str, Any]:
        return {**super().describe(protocol), "crawl_interval_s": self.table.refresh_interval}

    def routing_table_size(self) -> int:
        return len(self.table) if self.table.ready else len(self.routing)

    def ready(self, joined: bool) -> bool:
        return joined and self.table.ready

    def maintenance(self) -> Schedule:
        """Check 60 times per crawl interval (at least a second apart) whether a crawl is
        due (``FullRoutingTable.needs_refresh``: start to start), and crawl then."""
        while True:
            now = yield max(1.0, self.table.refresh_interval / 60)
            if self.table.needs_refresh(now):
                yield "crawl"

    def start_crawl(self, now: float, **options: Any) -> Crawler:
        """A crawl seeded from the routing table (and the last crawl's peers)."""
        return self.table.start_crawl(self.routing.peers(), now=now, rpc_timeout=self.rpc_timeout,
                                      self_peer=self.me, **options)

    def finish_crawl(self, result: CrawlResult) -> None:
        self.table.finish_crawl(result)

    def seeds(self, target: Key) -> list[PeerRef]:
        if self.table.ready:
            return self.table.lookup_seeds(target)
        return super().seeds(target)

    def provide_operation(self, target: Key, now: float) -> ProvideOperation:
        """A direct store to the k closest of the table; ``NotReady`` before the first crawl."""
        return self.table.provide(target, now=now)


Dht = Literal["parsec-kad", "py-libp2p", "go-libp2p-kad-dht", "js-libp2p"]


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """One strategy: its name, a line for help texts, who does its DHT work (``dht``) and,
    for our engine's, the policy class."""

    name: str
    summary: str
    dht: Dht
    policy: type[EngineFleet] | None = None

    @property
    def engine(self) -> bool:
        """Runs on our engine: simulated, and may run as a DHT client (the handler is ours
        to leave out)."""
        return self.policy is not None


STRATEGIES: dict[str, StrategySpec] = {spec.name: spec for spec in (
    StrategySpec("default", "classic provide, first-provider walk (our engine)", "parsec-kad", EngineFleet),
    StrategySpec("optprov", "optimistic provide with a network-size estimator (our engine)", "parsec-kad",
                 OptimisticFleet),
    StrategySpec("fullrt", "full routing table: crawl, then store directly (our engine)", "parsec-kad",
                 FullTableFleet),
    StrategySpec("pylibp2p", "py-libp2p's own KadDHT, unchanged", "py-libp2p"),
    StrategySpec("go", "a go-libp2p-kad-dht peer in a child program", "go-libp2p-kad-dht"),
    StrategySpec("js", "a js-libp2p kad-dht peer in a child program", "js-libp2p"),
)}

ENGINE_STRATEGIES: tuple[str, ...] = tuple(name for name, spec in STRATEGIES.items() if spec.engine)
"""The strategies of our engine, in registry order."""


def engine_fleet(name: str, routing: RoutingTable, options: FleetOptions = FleetOptions()) -> EngineFleet:
    """The policy of the engine strategy ``name`` over ``routing`` (ValueError if unknown)."""
    spec = STRATEGIES.get(name)
    if spec is None or spec.policy is None:
        raise ValueError(f"unknown engine fleet {name!r}; known: {', '.join(ENGINE_STRATEGIES)}")
    return spec.policy(routing, options)
