"""The parsec server as a plain class for a Ray actor (options applied in parsec.cluster.deploy).

Constructing it starts the server, so when Ray restarts a crashed actor the new instance
comes back by itself: a new peer, a new ``nodes_ecs`` row, joined the honest way. The row's
``cmd`` names the Ray actor id, which stays the same across restarts, and a new incarnation
marks the rows of its earlier ones offline as soon as it has registered: a crash leaves no
row that looks alive.

On a cluster the actor asks the Ray node it landed on for its region, CPU, memory and
IP (``parsec.server.nodeinfo``); with ``bind_node_ip`` the HTTP API and the peer listen on
that IP, so a scheduler on another node can reach them while nothing listens on all
interfaces.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time

import psutil
from pydantic import BaseModel, Field

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings
from parsec.server import nodeinfo
from parsec.server.runtime import ServerRuntime


class ServerActorConfig(BaseModel):
    """Everything a server actor needs, typed, so a deploy job validates before placing."""

    name: str
    server: ServerSettings
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bootstrap: list[str] | None = None
    bind_node_ip: bool = False  # listen (HTTP and libp2p) on the Ray node's own IP

    def fingerprint(self) -> str:
        """A digest of the whole configuration: a redeploy replaces an actor whose differs."""
        settings = self.model_dump_json(exclude={"database": {"password"}})
        return hashlib.sha256((settings + self.database.password).encode()).hexdigest()[:16]


class ParsecServerActor:
    def __init__(self, config: ServerActorConfig) -> None:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        self.config = config
        self.started = time.time()
        self.ray_node = nodeinfo.current_ray_node()
        server = config.server
        if config.bind_node_ip and self.ray_node is not None:
            server = server.model_copy(update={"server_host": self.ray_node.ip, "peer_host": self.ray_node.ip})
        actor_id = _ray_actor_id()
        cmd = f"ray actor {config.name}{f' {actor_id}' if actor_id else ''} (fleet {config.server.fleet})"
        self.runtime = ServerRuntime(server, config.network, config.database, bootstrap=config.bootstrap, cmd=cmd,
                                     ray_node=self.ray_node, retire_same_cmd=actor_id is not None)
        self.runtime.start()

    def status(self) -> dict:
        """The runtime's status, where it runs and what it costs (this process's CPU and RSS)."""
        status = self.runtime.refresh_status()
        process = psutil.Process(os.getpid())
        cpu = process.cpu_times()
        return {**status.__dict__, "name": self.config.name, "fleet": self.config.server.fleet,
                "fingerprint": self.config.fingerprint(), "pid": process.pid,
                "node_ip": self.ray_node.ip if self.ray_node else "", "ray_node_id": self.ray_node.node_id if self.ray_node else "",
                "rss_mb": process.memory_info().rss / (1 << 20), "cpu_seconds": cpu.user + cpu.system,
                "uptime_seconds": time.time() - self.started}

    def cut_off(self, regions: list[str]) -> None:
        """Cut these regions off for this server's peer (``[]`` restores): a fault test's
        and the chaos bench's runtime control (``parsec.model.latency``, "Outage")."""
        if self.runtime.latency is None:
            raise ValueError("this server emulates no latency, so it has no regions to cut off")
        self.runtime.latency.cut_off(regions)

    def stop(self) -> None:
        self.runtime.stop()


def _ray_actor_id() -> str | None:
    """This actor's id (the same for every incarnation), or None outside a Ray actor."""
    try:
        import ray  # here: the actor class also runs without Ray (tests), and then ray need not be imported

        return ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
    except Exception:
        return None
