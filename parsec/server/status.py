"""What a running server reports about itself (``ServerRuntime.status``, the Ray actor's
``status()``): where it listens, its ``nodes_ecs`` row, readiness and the last error."""

from __future__ import annotations

from dataclasses import dataclass


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
