"""One parsec server process: libp2p peer + HTTP API on trio, registration on asyncio.

The same runtime runs inside the Ray actor (``parsec.server.actor``) and under
``parsec server``: the libp2p host, the DHT node and hypercorn serving the FastAPI app
share one trio loop in a thread (an HTTP request calls the DHT directly, with no hop to
another loop or thread on the way: docs/operations.md, "By-hand observations"), while asyncpg
registration and heartbeats run on an asyncio loop in another.

Readiness means something here (the original always answers 200): the routing table
holds at least ``min_routing_table`` peers after an honest bootstrap, the start-up delay
passed, and the ``nodes_ecs`` row exists. Heartbeats are written only while ready.

This module holds the lifecycle; the parts it runs are named for what they hold: the
bootstrap list (``bootstrap``), the HTTP socket and hypercorn (``listen``), the identity
and region (``identity``), the ``nodes_ecs`` row and its heartbeats (``heartbeat``).
"""

from __future__ import annotations

import logging
import socket
import sys
import time

import trio

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings
from parsec.loops import AsyncioThread, TrioThread, freeze_long_lived
from parsec.net import ports, pylibp2p
from parsec.net.external_strategy import ExternalPeer
from parsec.net.strategies import DhtStrategy, make_strategy
from parsec.server import nodeinfo
from parsec.server.app import create_app
from parsec.server.bootstrap import parse_bootstrap, resolve_dns_addrs
from parsec.server.heartbeat import Registration
from parsec.server.identity import server_identity
from parsec.server.listen import bind_socket, http_config, serve_http
from parsec.server.metrics import ServerMetrics
from parsec.server.status import ServerStatus
from parsec.server.strategy_backend import StrategyBackend
from parsec.store.db import NodeInfo

log = logging.getLogger("parsec.server")


class ServerRuntime:
    """Start, run and stop one parsec server; blocking methods, safe from any thread."""

    def __init__(self, server: ServerSettings, network: NetworkSettings, database: DatabaseSettings,
                 *, bootstrap: list[str] | None = None, cmd: str | None = None,
                 ray_node: nodeinfo.RayNode | None = None, retire_same_cmd: bool = False) -> None:
        self.settings = server
        self.ray_node = ray_node  # where Ray placed us: region, resources, address
        self.network = network
        self.database = database
        self.bootstrap_addrs = bootstrap if bootstrap is not None else network.resolved_bootstrap()
        self.cmd = cmd or " ".join(sys.argv)
        self.status = ServerStatus()
        self._started_at = 0.0
        self._trio = TrioThread("parsec-server", watch_lag=True)
        self._db = AsyncioThread("parsec-db")
        self._strategy: DhtStrategy | None = None
        self._registration = Registration(database, self.status, heartbeat_interval=server.heartbeat_interval,
                                          retire_same_cmd=retire_same_cmd)
        self._heartbeat_future = None
        self._http_cancel: trio.CancelScope | None = None
        self.metrics = ServerMetrics()  # served at /metrics (and on the telemetry port by `parsec server`)
        self.latency = network.latency_model()
        self._key, self.region = server_identity(server, ray_node, self.latency)
        self.status.region = self.region

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> ServerStatus:
        """Bring up the peer and the HTTP API; joining and registration continue behind."""
        self._started_at = time.monotonic()
        self._trio.start()
        self._db.start()
        self._trio.start_service(self._serve_peer)
        if self.settings.listens_everywhere and self.settings.auth_token is None:
            log.warning("the HTTP API listens on every interface without PARSEC_SERVER_AUTH_TOKEN: anyone who "
                        "can reach port %d can start DHT operations", self.settings.server_port)
        sock = bind_socket(self.settings.server_host, self.settings.server_port)
        self.status.http_host = self.settings.server_host
        self.status.http_port = sock.getsockname()[1]
        self._trio.start_service(self._serve_http, sock)
        self._trio.run_sync(self._trio.nursery.start_soon, self._join)
        self._heartbeat_future = self._db.submit(self._registration.run(self._node_info, self.is_ready))
        return self.status

    def stop(self) -> None:
        """Graceful: mark the row offline, stop HTTP and the peer."""
        if self._heartbeat_future is not None:
            self._heartbeat_future.cancel()
        registration = self._registration
        if registration.registered:
            try:
                self._db.run(registration.mark_offline(), timeout=10)
            except Exception as error:
                log.warning("could not mark node %s offline: %s", self.status.node_id, error)
        if registration.pool is not None:
            try:
                self._db.run(registration.pool.close(), timeout=10)
            except Exception:
                pass
        self._trio.stop()
        self._db.stop()

    def refresh_status(self) -> ServerStatus:
        if self._strategy is not None:
            self.status.routing_table_size = self._strategy.routing_table_size()
        self.status.ready = self.is_ready()
        return self.status

    def is_ready(self) -> bool:
        strategy = self._strategy
        return bool(
            strategy is not None
            and self.status.joined
            and strategy.ready()
            and self.status.node_id is not None
            and strategy.routing_table_size() >= self.settings.min_routing_table
            and time.monotonic() - self._started_at >= self.settings.startup_delay
        )

    # -- trio side ------------------------------------------------------------

    async def _serve_peer(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        peer_port = self.settings.peer_port or ports.free_port(self.settings.peer_host)
        host, listen = pylibp2p.create_host(self._key, self.settings.peer_host, peer_port)
        async with trio.open_nursery() as background:
            # the DHT protocol is registered before the host connects anywhere (design.md)
            strategy = make_strategy(self.settings.strategy, host, background, protocol_id=self.network.protocol_id,
                                     rpc_timeout=self.settings.rpc_timeout,
                                     crawl_interval=self.settings.crawl_interval, latency=self.latency,
                                     serve=self.settings.serves_dht)
            async with host.run([listen]):
                self._strategy = strategy
                self.status.peer_id = host.get_id().to_base58()
                self.status.peer_port = int(pylibp2p.listen_addrs(host)[0].value_for_protocol("tcp"))
                external = strategy if isinstance(strategy, ExternalPeer) else None
                if external is not None:  # another implementation's peer does the DHT work
                    await external.start()
                    self.status.peer_id, self.status.peer_port = external.peer_id, external.peer_port
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    if external is not None:
                        external.stop()

    async def _serve_http(self, sock: socket.socket, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = http_config(self.settings, sock)
        backend = StrategyBackend(self._strategy, self.is_ready, self._trio.nursery.start_soon, lag=self._trio.lag)
        app = create_app(backend, self.settings, metrics=self.metrics)
        task_status.started()
        await serve_http(app, config)

    async def _join(self) -> None:
        """Dial the bootstrap peers, self-lookup, refresh buckets; retry until joined."""
        delay = 1.0
        addrs = self.bootstrap_addrs
        while True:
            peers = parse_bootstrap(await resolve_dns_addrs(addrs))
            if not peers:
                self.status.error = self.network.missing_bootstrap_hint()
                addrs = self.network.resolved_bootstrap()
            else:
                try:
                    size = await self._strategy.join(peers)
                    if size >= max(self.settings.min_routing_table, 1):
                        self.status.joined = True
                        self.status.error = ""
                        log.info("joined the DHT: %d peers in the routing table", size)
                        freeze_long_lived()  # no start-up heap in the collections that stall measurements
                        await self._strategy.maintain()
                        return
                    self.status.error = f"bootstrap reached only {size} peers"
                except Exception as error:
                    self.status.error = f"bootstrap failed: {error}"
            log.warning("%s; retrying in %.0fs", self.status.error, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    # -- asyncio side -----------------------------------------------------------

    def _node_info(self) -> NodeInfo:
        """The row this server registers: where it runs, what it is, how to reach it (asked
        once the database answers, on the asyncio loop: the ECS metadata is a request)."""
        cpu, memory, ecs_ip = nodeinfo.resources(nodeinfo.ecs_metadata(), self.ray_node)
        return NodeInfo(
            cpu=cpu, memory=memory, peer_id=self.status.peer_id,
            region=self.region, cmd=self.cmd, fleet=self.settings.fleet,
            dependencies=nodeinfo.dependencies(self._strategy.dependencies()),
            ip_address=nodeinfo.advertised_ip(self.settings, ecs_ip, self.ray_node), server_port=self.status.http_port,
            peer_port=self.status.peer_port,
        )
