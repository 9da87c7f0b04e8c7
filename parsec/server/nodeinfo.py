"""What a server says about itself in ``nodes_ecs``: resources, address, region, stack.

On ECS the original read cpu, memory and the private IP from the task metadata endpoint
(``ECS_CONTAINER_METADATA_URI_V4``); elsewhere we read the machine. The address is the one
the scheduler must use, never ``0.0.0.0``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from importlib.metadata import version

from parsec.config import ServerSettings, region_from_env


def ecs_metadata(timeout: float = 2.0) -> dict | None:
    """The task metadata document, or None outside ECS or when it cannot be read."""
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not uri:
        return None
    try:
        with urllib.request.urlopen(uri, timeout=timeout) as response:  # noqa: S310 - ECS-local
            return json.load(response)
    except Exception:
        return None


def ecs_resources(document: dict) -> tuple[int | None, int | None, str | None]:
    """(cpu, memory MB, private IPv4) from an ECS v4 metadata document."""
    limits = document.get("Limits") or {}
    ip = None
    for network in document.get("Networks") or []:
        if network.get("NetworkMode") == "awsvpc" and network.get("IPv4Addresses"):
            ip = network["IPv4Addresses"][0]
            break
    cpu = limits.get("CPU")
    memory = limits.get("Memory")
    return (int(cpu) if cpu is not None else None, int(memory) if memory is not None else None, ip)


def machine_resources() -> tuple[int, int]:
    import psutil

    return os.cpu_count() or 1, int(psutil.virtual_memory().total / (1 << 20))


def advertised_ip(settings: ServerSettings, ecs_ip: str | None = None) -> str:
    """The address the scheduler should dial: explicit, ECS, bound host, or a local IP."""
    if settings.advertise_host:
        return settings.advertise_host
    if ecs_ip:
        return ecs_ip
    if settings.server_host not in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(settings.server_host)
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    return "127.0.0.1"


def dependencies(strategy: dict) -> dict:
    """The exact stack, as ``nodes_ecs.dependencies``: implementation, versions, strategy."""
    return {
        "implementation": "parsec-py",
        "parsec": version("parsec") if _installed("parsec") else "dev",
        "libp2p": "py-libp2p",
        "libp2p_version": version("libp2p"),
        "python": sys.version.split()[0],
        **strategy,
    }


def _installed(name: str) -> bool:
    try:
        version(name)
        return True
    except Exception:
        return False


def region() -> str:
    return region_from_env()
