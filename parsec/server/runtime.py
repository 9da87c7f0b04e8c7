"""One parsec server process: libp2p peer + HTTP API on trio, registration on asyncio.

The same runtime runs inside the Ray actor (``parsec.server.actor``) and under
``parsec server``: the libp2p host, the DHT node and hypercorn serving the FastAPI app
share one trio loop in a thread (an HTTP request calls the DHT directly, ≈1.5 ms
overhead), while asyncpg registration and heartbeats run on an asyncio loop in another.

Readiness means something here (the original always answers 200): the routing table
holds at least ``min_routing_table`` peers after an honest bootstrap, the start-up delay
passed, and the ``nodes_ecs`` row exists. Heartbeats are written only while ready. If the
scheduler marked this node offline and it is ready again, it registers a fresh row rather
than silently clearing the mark (a deliberate, visible re-admission).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from dataclasses import dataclass

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from libp2p.peer.id import ID

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings
from parsec.loops import AsyncioThread, TrioThread, freeze_long_lived
from parsec.net import ports, pylibp2p
from parsec.net.strategies import DhtStrategy, make_strategy
from parsec.net.wire import WirePeer
from parsec.server import nodeinfo
from parsec.server.app import create_app
from parsec.server.metrics import ServerMetrics
from parsec.server.strategy_backend import StrategyBackend

log = logging.getLogger("parsec.server")


@dataclass
class ServerStatus:
    peer_id: str = ""
    region: str = ""
    http_host: str = ""
    http_port: int = 0
    peer_port: int = 0
    node_id: int | None = None
    joined: bool = False
    ready: bool = False
    heartbeats: int = 0  # written while ready; the scheduler discovers nodes by them
    routing_table_size: int = 0
    error: str = ""


def parse_bootstrap(addrs: list[str]) -> list[WirePeer]:
    """``/ip4/…/tcp/…/p2p/<id>`` strings as wire peers; bad entries are reported, skipped."""
    import multiaddr

    peers = []
    for text in addrs:
        try:
            addr = multiaddr.Multiaddr(text)
            peer_id = ID.from_base58(addr.get_peer_id())
            transport = addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id.to_base58()}"))
            peers.append(WirePeer.of(peer_id, [transport]))
        except Exception as error:
            log.warning("skipping bootstrap address %r: %s", text, error)
    return peers


DNS_PROTOCOLS = ("dns", "dns4", "dns6", "dnsaddr")


async def resolve_dns_addrs(addrs: list[str], resolve=None) -> list[str]:
    """Bootstrap addresses with DNS names (amino's ``/dnsaddr/bootstrap.libp2p.io/p2p/…``)
    resolved to the ``/ip4|ip6/…/tcp/…/p2p/…`` addresses our TCP transport dials.

    ``resolve`` maps one multiaddr to its resolutions (default: py-multiaddr's DNS
    resolver). Addresses without a DNS part pass unchanged; a name that does not resolve
    is logged and dropped, so the others still bootstrap.
    """
    import multiaddr

    if resolve is None:
        async def resolve(addr):
            return await addr.resolve()

    out: list[str] = []
    for text in addrs:
        try:
            addr = multiaddr.Multiaddr(text)
            if not any(proto.name in DNS_PROTOCOLS for proto in addr.protocols()):
                out.append(text)
                continue
            peer = addr.get_peer_id()
            for resolved in await resolve(addr):
                names = [proto.name for proto in resolved.protocols()]
                if names[:2] not in (["ip4", "tcp"], ["ip6", "tcp"]) or set(names) - {"ip4", "ip6", "tcp", "p2p"}:
                    continue  # quic, websockets, …: not our transport
                if resolved.get_peer_id() is None and peer:
                    resolved = resolved.encapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))
                if peer is None or resolved.get_peer_id() == peer:
                    out.append(str(resolved))
        except Exception as error:
            log.warning("cannot resolve bootstrap address %r: %s", text, error)
    return list(dict.fromkeys(out))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP socket ourselves: a busy port is a clear error, not a sys.exit; port 0
    is a free port the original's ``nodes_ecs`` can store (``ports.CHOSEN_RANGE``)."""
    try:
        sock = ports.bind_tcp(host, port)
    except ports.NoFreePort as error:
        raise RuntimeError(f"cannot bind the HTTP API: {error}") from None
    except OSError as error:
        raise RuntimeError(f"cannot bind the HTTP API to {host}:{port}: {error.strerror}") from None
    sock.listen(1024)
    return sock


def http_config(settings: ServerSettings, sock: socket.socket) -> HypercornConfig:
    """hypercorn serving on ``sock`` (which it then owns) with the server's limits."""
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("parsec.server.http")
    # hypercorn's idle timer runs from the connection's start until a request head is complete,
    # so it bounds the time a head may take (slow or silent clients) as well as keep-alive
    config.keep_alive_timeout = settings.idle_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes  # bigger request heads: refused
    config.read_timeout = settings.body_timeout  # a client silent mid-body is dropped
    return config


class ServerRuntime:
    """Start, run and stop one parsec server; blocking methods, safe from any thread."""

    def __init__(self, server: ServerSettings, network: NetworkSettings, database: DatabaseSettings,
                 *, bootstrap: list[str] | None = None, cmd: str | None = None,
                 ray_node: nodeinfo.RayNode | None = None, retire_same_cmd: bool = False) -> None:
        self.settings = server
        self.retire_same_cmd = retire_same_cmd  # rows with our cmd are earlier incarnations (a Ray actor's)
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
        self._repo = None
        self._pool = None
        self._heartbeat_future = None
        self._http_cancel: trio.CancelScope | None = None
        self.metrics = ServerMetrics()  # served at /metrics (and on the telemetry port by `parsec server`)
        self.latency = network.latency_model()
        self._key, self.region = self._identity()
        self.status.region = self.region

    def _identity(self):
        """A libp2p identity, and the region this server reports.

        Under WAN emulation a peer's region follows from its id (parsec.model.latency), so the
        server draws identities until one lands in its configured region; a region the
        model does not place peers in gives way to the identity's own region.
        """
        wanted = self.settings.region or nodeinfo.region(self.ray_node)
        model = self.latency
        if model is None:
            return pylibp2p.keypair(), wanted
        if wanted in model.regions and model.weights[model.index(wanted)] > 0:
            return pylibp2p.keypair_in(wanted, model), wanted
        key = pylibp2p.keypair()
        return key, model.region_of(ID.from_pubkey(key.public_key).to_bytes())

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
        self._heartbeat_future = self._db.submit(self._register_and_heartbeat())
        return self.status

    def stop(self) -> None:
        """Graceful: mark the row offline, stop HTTP and the peer."""
        if self._heartbeat_future is not None:
            self._heartbeat_future.cancel()
        if self._repo is not None and self.status.node_id is not None:
            try:
                self._db.run(self._repo.mark_offline([self.status.node_id]), timeout=10)
            except Exception as error:
                log.warning("could not mark node %s offline: %s", self.status.node_id, error)
        if self._pool is not None:
            try:
                self._db.run(self._pool.close(), timeout=10)
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
                if hasattr(strategy, "start"):  # another implementation's peer does the DHT work
                    await strategy.start()
                    self.status.peer_id, self.status.peer_port = strategy.peer_id, strategy.peer_port
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    if hasattr(strategy, "stop"):
                        strategy.stop()

    async def _serve_http(self, sock: socket.socket, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = http_config(self.settings, sock)
        backend = StrategyBackend(self._strategy, self.is_ready, self._trio.nursery.start_soon, lag=self._trio.lag)
        app = create_app(backend, self.settings, metrics=self.metrics)
        task_status.started()
        await hypercorn_serve(app, config)

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

    async def _register_and_heartbeat(self) -> None:
        import asyncio

        from parsec.store.db import NodeInfo, Repository, connect_pool
        from parsec.store.migrations import apply_migrations

        while self._pool is None:
            try:
                self._pool = await connect_pool(self.database)
                await apply_migrations(self._pool)
            except Exception as error:
                self._pool = None
                self.status.error = f"database: {error}"
                log.warning("%s; retrying in 5s", self.status.error)
                await asyncio.sleep(5)
        self._repo = Repository(self._pool)
        cpu, memory, ecs_ip = nodeinfo.resources(nodeinfo.ecs_metadata(), self.ray_node)
        info = NodeInfo(
            cpu=cpu, memory=memory, peer_id=self.status.peer_id,
            region=self.region, cmd=self.cmd, fleet=self.settings.fleet,
            dependencies=nodeinfo.dependencies(self._strategy.dependencies()),
            ip_address=nodeinfo.advertised_ip(self.settings, ecs_ip, self.ray_node), server_port=self.status.http_port,
            peer_port=self.status.peer_port,
        )
        self.status.node_id = await self._repo.insert_node(info)
        if self.retire_same_cmd:
            try:
                await self._repo.retire_other_rows(info.cmd, self.status.node_id)
            except Exception as error:  # the scheduler's readiness check marks them later
                log.warning("could not mark earlier rows of %r offline: %s", info.cmd, error)
        while True:
            if self.is_ready():
                try:
                    if not await self._repo.heartbeat(self.status.node_id):
                        log.warning("node %s was marked offline; registering again", self.status.node_id)
                        self.status.node_id = await self._repo.insert_node(info)
                        await self._repo.heartbeat(self.status.node_id)
                    self.status.heartbeats += 1
                except Exception as error:  # a database outage must not end the server
                    log.warning("heartbeat failed: %s", error)
                await asyncio.sleep(self.settings.heartbeat_interval)
            else:
                await asyncio.sleep(0.5)
