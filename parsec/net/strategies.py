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

from parsec.kad import LookupResult, key_of
from parsec.kad.constants import NOT_READY
from parsec.kad.fleets import STRATEGIES, EngineFleet, FleetOptions, Upkeep, engine_fleet
from parsec.kad.fullrt import FULLRT_CRAWL_INTERVAL, NotReady
from parsec.net import driver
from parsec.net.driver import Trace
from parsec.net.node import DhtNode, RpcError
from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.net.strategies")

CRAWL_CONCURRENCY = 32
"""Crawl requests in flight. go's crawler runs 1,000 workers against the internet, where a
request waits on the network; on a loopback testbed every request costs CPU only, so more
requests in flight than the machine's cores can serve wait in line until they hit the 10 s
request timeout, and the crawl retries nothing: a peer whose first request timed out counts
as unreachable and stays out of the table (what 200 at once did on two cores: docs/testbed.md,
"By-hand observations")."""


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
    """Our engine on a ``DhtNode``, for any engine strategy: ``fleet`` (its policy,
    ``parsec.kad.fleets``) decides; this adapter sends, waits and times."""

    def __init__(self, node: DhtNode, background: trio.Nursery, fleet: EngineFleet | None = None, *,
                 crawl_concurrency: int = CRAWL_CONCURRENCY) -> None:
        self.node = node
        self.background = background  # where stores answered-before-done keep running
        self.fleet = fleet if fleet is not None else EngineFleet(node.routing, FleetOptions(node.rpc_timeout))
        self.name = self.fleet.name
        self.crawl_concurrency = crawl_concurrency
        self.joined = False

    def dependencies(self) -> dict:
        return self.fleet.describe(self.node.protocol_id)

    def routing_table_size(self) -> int:
        return self.fleet.routing_table_size()

    def ready(self) -> bool:
        return self.fleet.ready(self.joined)

    def _track(self, result: LookupResult) -> None:
        self.fleet.track_lookup(result, trio.current_time())

    async def join(self, peers: list[WirePeer]) -> int:
        size = await driver.bootstrap(self.node, peers, on_lookup=self._track)
        self.joined = size > 0
        if self.fleet.join_upkeep is not None:
            await self.upkeep(self.fleet.join_upkeep)
        return size

    async def maintain(self) -> None:
        """Run the fleet's maintenance schedule, forever."""
        schedule = self.fleet.maintenance()
        step = next(schedule)
        while True:
            if isinstance(step, str):
                await self.upkeep(step)
            else:
                await trio.sleep(step)
            step = schedule.send(trio.current_time())

    async def upkeep(self, upkeep: Upkeep) -> None:
        """Run one upkeep of the schedule now: a refresh of the buckets, or a crawl."""
        if upkeep == "refresh":
            await driver.refresh_buckets(self.node, on_lookup=self._track)
            return
        crawler = self.fleet.start_crawl(trio.current_time(), max_in_flight=self.crawl_concurrency)
        result = await driver.run_crawl(self.node, crawler)
        self.fleet.finish_crawl(result)
        log.info("crawl: %d reachable, %d unreachable in %.1fs", len(result.reachable), len(result.unreachable),
                 result.duration or 0)

    async def provide(self, key: bytes) -> Trace:
        now = trio.current_time()
        try:
            op = self.fleet.provide_operation(key_of(key), now)
        except NotReady:
            raise RpcError(NOT_READY) from None
        extra = self.fleet.provide_extra(now)  # the estimate the thresholds come from
        trace = Trace("provide")
        await driver.run_provide(self.node, op, key, trace, background=self.background, on_lookup=self._track)
        trace.extra.update(extra)
        return trace

    async def find_first_provider(self, key: bytes) -> tuple[bytes | None, Trace]:
        found, trace = await driver.find_first_provider(self.node, key, seeds=self.fleet.seeds(key_of(key)),
                                                        background=self.background)
        return (found.peer_id if found else None), trace

    async def forget(self, peer_id: bytes) -> None:
        if peer_id != self.node.me.peer_id:
            await self.node.forget(peer_id)


def make_strategy(fleet: str, host: IHost, background: trio.Nursery, *, protocol_id: str,
                  rpc_timeout: float, crawl_interval: float = FULLRT_CRAWL_INTERVAL, latency=None,
                  serve: bool = True) -> DhtStrategy:
    """The strategy ``fleet`` (a name of ``parsec.kad.fleets.STRATEGIES``) on ``host``; with
    ``serve`` it registers its DHT protocol handler (a DHT server), without it the peer asks
    and never answers (a DHT client, our engine's strategies only)."""
    spec = STRATEGIES.get(fleet)
    if spec is None:
        raise ValueError(f"unknown fleet {fleet!r}")
    if not serve and not spec.engine:
        raise ValueError(f"fleet {fleet!r} has no DHT client mode")
    if spec.dht == "py-libp2p":
        from parsec.net.stock import StockStrategy

        if latency is not None:
            log.warning("pylibp2p fleet: py-libp2p's KadDHT runs unchanged, so its own messages are not delayed")
        return StockStrategy(host, background, protocol_id=protocol_id, rpc_timeout=rpc_timeout)
    if not spec.engine:
        from parsec.net.external_strategy import ExternalStrategy

        return ExternalStrategy(fleet, protocol_id=protocol_id, latency=latency, rpc_timeout=rpc_timeout)
    node = DhtNode(host, protocol_id=protocol_id, rpc_timeout=rpc_timeout, latency=latency)
    if serve:
        node.start()
    options = FleetOptions(rpc_timeout=rpc_timeout, crawl_interval=crawl_interval)
    return EngineStrategy(node, background, engine_fleet(fleet, node.routing, options))
