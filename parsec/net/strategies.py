"""What each fleet does for provide and retrieval, on a libp2p host.

A fleet is a configuration (interface.md, "Fleets"); here each is a strategy object with
the same small interface, so the server's HTTP backend times them all the same way. What
the engine fleets decide (which provide machine, which seeds, readiness) is pure policy in
``parsec.kad.fleets``, shared with the simulator; this module runs it on a libp2p host:

- ``default``  classic provide (lookup of the 20 closest, ADD_PROVIDER to all), first-
  provider walk; α=10, β=3, k=20.
- ``optprov``  optimistic provide: a network-size estimator fed by every completed lookup,
  early stores below the individual threshold, walk ended by the set threshold, answer
  after 15 of 20 stores with the rest finishing in the background (pool of 60); falls back
  to classic while the estimator lacks data.
- ``fullrt``   crawl the whole network at join and every hour; provide straight to the 20
  closest of the crawled table; lookups start from it; not ready before the first crawl.
- ``pylibp2p`` py-libp2p's own ``KadDHT`` unchanged (``parsec.net.stock``).
- ``go`` / ``js`` one go-libp2p-kad-dht / js-libp2p peer in a child program does the DHT
  work with its own code (``parsec.net.external_strategy``).
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio
from libp2p.abc import IHost

from parsec.kad import PeerRef, key_of
from parsec.kad.fleets import EngineFleet, FullTableFleet, OptimisticFleet
from parsec.kad.fullrt import NotReady
from parsec.net import driver
from parsec.net.driver import Trace
from parsec.net.node import DhtNode, RpcError
from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.net.strategies")

CRAWL_CONCURRENCY = 32
"""Crawl requests in flight. go's crawler runs 1,000 workers against the internet, where a
request waits on the network; on a loopback testbed every request costs CPU only, and 200
at once starved two cores into 10 s timeouts (half of a 1,000-peer crawl lost)."""


class DhtStrategy(Protocol):
    """The operations a parsec server times, whatever the implementation behind them."""

    name: str

    def dependencies(self) -> dict: ...
    def routing_table_size(self) -> int: ...
    def ready(self) -> bool: ...
    async def join(self, peers: list[WirePeer]) -> int: ...
    async def maintain(self) -> None: ...
    async def provide(self, key: bytes) -> Trace: ...
    async def find_first_provider(self, key: bytes) -> tuple[bytes | None, Trace]: ...
    async def forget(self, peer_id: bytes) -> None: ...


class EngineStrategy:
    """Our Kademlia engine on a ``DhtNode``: the ``default`` fleet; subclasses vary it."""

    name = EngineFleet.name
    provide_strategy = EngineFleet.provide_strategy

    def __init__(self, node: DhtNode, background: trio.Nursery) -> None:
        self.node = node
        self.background = background  # where stores answered-before-done keep running
        self.joined = False
        self.fleet = self._policy()

    def _policy(self) -> EngineFleet:
        return EngineFleet(self.node.routing, rpc_timeout=self.node.rpc_timeout)

    def dependencies(self) -> dict:
        return self.fleet.dependencies(self.node.protocol_id)

    def routing_table_size(self) -> int:
        return self.fleet.routing_table_size()

    def ready(self) -> bool:
        return self.fleet.ready(self.joined)

    async def join(self, peers: list[WirePeer]) -> int:
        size = await driver.bootstrap(self.node, peers)
        self.joined = size > 0
        return size

    async def maintain(self) -> None:
        """Refresh the buckets now (far buckets fill) and every ``REFRESH_PERIOD`` after."""
        while True:
            await driver.refresh_buckets(self.node)
            await trio.sleep(driver.REFRESH_PERIOD)

    def _seeds(self, key: bytes) -> list[PeerRef]:
        return self.fleet.seeds(key_of(key))

    def _operation(self, key: bytes, now: float):
        return self.fleet.provide_operation(key_of(key), now)

    async def provide(self, key: bytes) -> Trace:
        trace = Trace("provide")
        op = self._operation(key, trio.current_time())
        await driver.run_provide(self.node, op, key, trace, background=self.background)
        return trace

    async def find_first_provider(self, key: bytes) -> tuple[bytes | None, Trace]:
        found, trace = await driver.find_first_provider(self.node, key, seeds=self._seeds(key),
                                                        background=self.background)
        return (found.peer_id if found else None), trace

    async def forget(self, peer_id: bytes) -> None:
        if peer_id != self.node.me.peer_id:
            await self.node.forget(peer_id)


class OptimisticStrategy(EngineStrategy):
    """``optprov``: optimistic provide with a network-size estimator (pool of 60 shared)."""

    name = OptimisticFleet.name
    provide_strategy = OptimisticFleet.provide_strategy

    def __init__(self, node: DhtNode, background: trio.Nursery) -> None:
        super().__init__(node, background)
        node.estimator = self.fleet.estimator
        self.pool = self.fleet.pool

    def _policy(self) -> OptimisticFleet:
        return OptimisticFleet(self.node.routing, rpc_timeout=self.node.rpc_timeout)

    async def provide(self, key: bytes) -> Trace:
        extra = self.fleet.provide_extra(trio.current_time())  # the estimate the thresholds come from
        trace = await super().provide(key)
        trace.extra.update(extra)
        return trace


class FullTableStrategy(EngineStrategy):
    """``fullrt``: a crawled table of the whole network, re-crawled every ``refresh``."""

    name = FullTableFleet.name
    provide_strategy = FullTableFleet.provide_strategy

    def __init__(self, node: DhtNode, background: trio.Nursery, refresh: float = 3600.0,
                 crawl_concurrency: int = CRAWL_CONCURRENCY) -> None:
        self.refresh = refresh
        super().__init__(node, background)
        self.table = self.fleet.table
        self.crawl_concurrency = crawl_concurrency

    def _policy(self) -> FullTableFleet:
        return FullTableFleet(self.node.routing, rpc_timeout=self.node.rpc_timeout, refresh=self.refresh)

    async def join(self, peers: list[WirePeer]) -> int:
        size = await super().join(peers)
        await self.crawl()
        return size

    async def crawl(self) -> None:
        crawler = self.fleet.start_crawl(trio.current_time(), max_in_flight=self.crawl_concurrency)
        result = await driver.run_crawl(self.node, crawler)
        self.fleet.finish_crawl(result)
        log.info("crawl: %d reachable, %d unreachable in %.1fs", len(result.reachable), len(result.unreachable),
                 result.duration or 0)

    async def maintain(self) -> None:
        while True:
            await trio.sleep(max(1.0, self.table.refresh_interval / 60))
            if self.table.needs_refresh(trio.current_time()):
                await self.crawl()

    def _operation(self, key: bytes, now: float):
        try:
            return super()._operation(key, now)
        except NotReady:
            raise RpcError("full routing table not ready: first crawl not finished") from None


ENGINE_FLEETS = {"default": EngineStrategy, "optprov": OptimisticStrategy, "fullrt": FullTableStrategy}


def make_strategy(fleet: str, host: IHost, background: trio.Nursery, *, protocol_id: str,
                  rpc_timeout: float, crawl_interval: float = 3600.0, latency=None,
                  serve: bool = True) -> DhtStrategy:
    """The strategy of ``fleet`` on ``host``; with ``serve`` it registers its DHT protocol
    handler (a DHT server), without it the peer asks and never answers (a DHT client,
    our engine's fleets only)."""
    if not serve and fleet not in ENGINE_FLEETS:
        raise ValueError(f"fleet {fleet!r} has no DHT client mode")
    if fleet == "pylibp2p":
        from parsec.net.stock import StockStrategy

        if latency is not None:
            log.warning("pylibp2p fleet: py-libp2p's KadDHT runs unchanged, so its own messages are not delayed")
        return StockStrategy(host, background, protocol_id=protocol_id, rpc_timeout=rpc_timeout)
    if fleet in ("go", "js"):
        from parsec.net.external_strategy import ExternalStrategy

        return ExternalStrategy(fleet, protocol_id=protocol_id, latency=latency, rpc_timeout=rpc_timeout)
    if fleet not in ENGINE_FLEETS:
        raise ValueError(f"unknown fleet {fleet!r}")
    node = DhtNode(host, protocol_id=protocol_id, rpc_timeout=rpc_timeout, latency=latency)
    if serve:
        node.start()
    if fleet == "fullrt":
        return FullTableStrategy(node, background, refresh=crawl_interval)
    return ENGINE_FLEETS[fleet](node, background)
