"""The engine's fleets as pure policy: what ``default``, ``optprov`` and ``fullrt`` decide.

A fleet is a configuration (interface.md, "Fleets"): which provide machine a node builds,
which peers its lookups start from, what it feeds its network-size estimator, when it is
ready, what it reports. Those decisions are the same whatever carries the messages, so they
live here, once, over a node's state (its ``RoutingTable``, estimator, pool, full table),
and both drivers build on them: ``parsec.net.strategies`` over libp2p streams and
``parsec.sim`` over a virtual clock. Sending, timing and waiting stay in the drivers.

- ``EngineFleet`` (``default``): classic provide (lookup of the k closest, ADD_PROVIDER to
  all), lookups seeded from the k closest of the routing table; alpha=10, beta=3, k=20.
- ``OptimisticFleet`` (``optprov``): a network-size estimator fed by every completed
  closest-peers lookup; optimistic provide with its thresholds, the stall timeout and a
  background pool of 60 shared by the node's provides.
- ``FullTableFleet`` (``fullrt``): a crawled table of the whole network; provides go straight
  to its k closest (``NotReady`` before the first crawl); lookups are seeded from it.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from .crawl import Crawler, CrawlResult, random_key_bytes_with_cpl
from .estimator import NetworkSizeEstimator, bucket_fill_for
from .fullrt import FULLRT_CRAWL_INTERVAL, FullRoutingTable
from .keyspace import Key, PeerRef
from .lookup_types import LookupResult
from .optimistic import OPTPROV_STALL_TIMEOUT, OptimisticProvide
from .optprov import ClassicProvide, ProvideOperation
from .routing import RoutingTable
from .stores import BackgroundPool

ALPHA = 10
BETA = 3
REFRESH_CPLS = 12  # buckets refreshed by a lookup each (go refreshes up to cpl 15, skipping empty ones)
REFRESH_PERIOD = 600.0  # go-libp2p-kad-dht: routing table refresh every 10 minutes


def refresh_keys(local: Key, cpls: int = REFRESH_CPLS) -> list[bytes]:
    """The keys a routing-table refresh looks up: one random key per common-prefix length
    ``0..cpls-1`` with the local key (as go-libp2p-kad-dht's refresh), the same ones on
    every refresh of a node."""
    rng = random.Random(local)
    return [random_key_bytes_with_cpl(local, cpl, rng) for cpl in range(cpls)]


def feed_estimator(estimator: NetworkSizeEstimator | None, routing: RoutingTable, result: LookupResult,
                   now: float) -> None:
    """A completed closest-peers lookup is a data point for the network-size estimate,
    weighted by how full the routing-table bucket of its key is (as go weighs it)."""
    if estimator is not None:
        estimator.track_lookup(result, now, bucket_fill_for(routing, result.target, result.closest))


class EngineFleet:
    """``default``: classic provide, lookups from the routing table."""

    name: ClassVar[str] = "default"
    provide_strategy: ClassVar[str] = "classic"

    def __init__(self, routing: RoutingTable, *, rpc_timeout: float = 10.0) -> None:
        self.routing = routing
        self.k = routing.k
        self.me = routing.local
        self.rpc_timeout = rpc_timeout
        self.estimator: NetworkSizeEstimator | None = None

    def dependencies(self, protocol: str) -> dict[str, Any]:
        """What ``nodes_ecs.dependencies`` says of this fleet's DHT client."""
        return {"strategy": self.name, "provide": self.provide_strategy, "dht": "parsec-kad",
                "alpha": ALPHA, "beta": BETA, "k": self.k, "protocol": protocol}

    def routing_table_size(self) -> int:
        return len(self.routing)

    def ready(self, joined: bool) -> bool:
        """Whether the node can measure, given whether it has joined the DHT."""
        return joined

    def seeds(self, target: Key) -> list[PeerRef]:
        """Where a lookup of ``target`` starts: the k closest of the routing table (go)."""
        return self.routing.closest(target, self.k)

    def provide_operation(self, target: Key, now: float) -> ProvideOperation:
        return ClassicProvide(target, self.seeds(target), now=now, k=self.k, rpc_timeout=self.rpc_timeout,
                              self_peer=self.me)

    def provide_extra(self, now: float) -> dict[str, Any]:
        """Fleet-specific fields for a provide's trace."""
        return {}

    def track_lookup(self, result: LookupResult, now: float) -> None:
        """Feed the estimator (if the fleet keeps one) with a finished closest-peers lookup."""
        feed_estimator(self.estimator, self.routing, result, now)


class OptimisticFleet(EngineFleet):
    """``optprov``: optimistic provide with a network-size estimator (pool of 60 shared)."""

    name: ClassVar[str] = "optprov"
    provide_strategy: ClassVar[str] = "optimistic"

    def __init__(self, routing: RoutingTable, *, rpc_timeout: float = 10.0,
                 rules: Literal["parsec", "go"] = "parsec") -> None:
        super().__init__(routing, rpc_timeout=rpc_timeout)
        self.estimator = NetworkSizeEstimator(k=self.k)
        self.pool = BackgroundPool()
        self.rules = rules

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
    """``fullrt``: a crawled table of the whole network, re-crawled every ``refresh``."""

    name: ClassVar[str] = "fullrt"
    provide_strategy: ClassVar[str] = "direct"

    def __init__(self, routing: RoutingTable, *, rpc_timeout: float = 10.0,
                 refresh: float = FULLRT_CRAWL_INTERVAL) -> None:
        super().__init__(routing, rpc_timeout=rpc_timeout)
        self.table = FullRoutingTable(k=self.k, refresh_interval=refresh, self_peer=self.me)

    def dependencies(self, protocol: str) -> dict[str, Any]:
        return {**super().dependencies(protocol), "crawl_interval_s": self.table.refresh_interval}

    def routing_table_size(self) -> int:
        return len(self.table) if self.table.ready else len(self.routing)

    def ready(self, joined: bool) -> bool:
        return joined and self.table.ready

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


ENGINE_FLEETS: dict[str, type[EngineFleet]] = {
    "default": EngineFleet, "optprov": OptimisticFleet, "fullrt": FullTableFleet,
}


def engine_fleet(name: str, routing: RoutingTable, *, rpc_timeout: float = 10.0,
                 crawl_interval: float = FULLRT_CRAWL_INTERVAL,
                 optprov_rules: Literal["parsec", "go"] = "parsec") -> EngineFleet:
    """The policy of the engine fleet ``name`` over ``routing`` (ValueError if unknown)."""
    if name not in ENGINE_FLEETS:
        raise ValueError(f"unknown engine fleet {name!r}; known: {', '.join(ENGINE_FLEETS)}")
    if name == "fullrt":
        return FullTableFleet(routing, rpc_timeout=rpc_timeout, refresh=crawl_interval)
    if name == "optprov":
        return OptimisticFleet(routing, rpc_timeout=rpc_timeout, rules=optprov_rules)
    return ENGINE_FLEETS[name](routing, rpc_timeout=rpc_timeout)
