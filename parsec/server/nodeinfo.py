"""What a server says about itself in ``nodes_ecs``: resources, address, region, stack.

On ECS the original read cpu, memory and the private IP from the task metadata endpoint
(``ECS_CONTAINER_METADATA_URI_V4``). On a Ray cluster the node the actor landed on says the
rest: its IP, its ``region:<name>`` custom resource (how a fleet is placed by region) and
its CPU and memory resources. Elsewhere we read the machine. The address is the one the
scheduler must use, never ``0.0.0.0``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version

import psutil

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


REGION_RESOURCE_PREFIX = "region:"


@dataclass(frozen=True)
class RayNode:
    """The Ray node this process runs on, as its resources describe it."""

    node_id: str
    ip: str
    region: str | None
    cpu: int | None
    memory_mb: int | None


def region_resource(region: str) -> str:
    """The custom resource that marks a Ray node as being in ``region``."""
    return f"{REGION_RESOURCE_PREFIX}{region}"


def region_from_resources(resources: dict) -> str | None:
    """The region a node's ``region:<name>`` resource names; None without one (or with several)."""
    regions = sorted(key[len(REGION_RESOURCE_PREFIX):] for key in resources if key.startswith(REGION_RESOURCE_PREFIX))
    return regions[0] if len(regions) == 1 else None


def ray_node_from(node_id: str, ip: str, resources: dict) -> RayNode:
    """Pure: a node's facts from its id, IP and total resources (``memory`` is in bytes)."""
    cpu = resources.get("CPU")
    memory = resources.get("memory")
    return RayNode(node_id=node_id, ip=ip, region=region_from_resources(resources),
                   cpu=int(cpu) if cpu else None, memory_mb=int(memory / (1 << 20)) if memory else None)


def current_ray_node() -> RayNode | None:
    """The Ray node of this worker process, or None outside Ray."""
    try:
        import ray  # here, not at module top: `parsec server` runs without Ray (and needs no Ray import)

        if not ray.is_initialized():
            return None
        node_id = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id:
                return ray_node_from(node_id, node["NodeManagerAddress"], node.get("Resources") or {})
    except Exception:
        return None
    return None


def machine_resources() -> tuple[int, int]:
    return os.cpu_count() or 1, int(psutil.virtual_memory().total / (1 << 20))


def resources(ecs_document: dict | None, ray_node: RayNode | None) -> tuple[int, int, str | None]:
    """(cpu, memory MB, ECS IP): ECS task limits when on ECS, else the Ray node's resources,
    else the machine's."""
    cpu, memory, ecs_ip = ecs_resources(ecs_document) if ecs_document else (None, None, None)
    if ray_node is not None:
        cpu, memory = cpu or ray_node.cpu, memory or ray_node.memory_mb
    if not cpu or not memory:
        machine_cpu, machine_memory = machine_resources()
        cpu, memory = cpu or machine_cpu, memory or machine_memory
    return cpu, memory, ecs_ip


def advertised_ip(settings: ServerSettings, ecs_ip: str | None = None, ray_node: RayNode | None = None) -> str:
    """The address the scheduler should dial: explicit, ECS, bound host, the Ray node's IP,
    or loopback — never ``0.0.0.0``."""
    if settings.advertise_host:
        return settings.advertise_host
    if ecs_ip:
        return ecs_ip
    if settings.server_host not in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(settings.server_host)
    if ray_node is not None:
        return ray_node.ip
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


def region(ray_node: RayNode | None = None) -> str:
    """``AWS_REGION`` as in the original, else the Ray node's region resource, else ``local``."""
    if os.environ.get("AWS_REGION"):
        return region_from_env()
    if ray_node is not None and ray_node.region:
        return ray_node.region
    return region_from_env()
