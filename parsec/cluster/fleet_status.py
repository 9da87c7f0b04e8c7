"""``parsec fleet status``: fleets, servers, regions, readiness and last heartbeat.

Read from where a scheduler looks — ``nodes_ecs`` and each server's ``GET /readiness`` —
not from Ray, so it shows Go parsec servers and servers outside Ray alike, and what it
calls ready is what the next round will find ready.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from parsec.config import DatabaseSettings
from parsec.scheduler.client import ServerClient, node_url
from parsec.store.db import Repository, connect_pool


@dataclass(frozen=True)
class NodeStatus:
    id: int
    fleet: str
    region: str
    address: str
    peer_id: str
    cpu: int
    memory: int
    heartbeat_age_s: float | None
    offline: bool
    ready: bool | None  # None: not asked (offline)


async def collect(database: DatabaseSettings, fleets: list[str] | None = None, include_offline: bool = False,
                  readiness_timeout: float = 2.0) -> list[NodeStatus]:
    pool = await connect_pool(database)
    try:
        rows = await Repository(pool).list_nodes(fleets, include_offline)
    finally:
        await pool.close()
    client = ServerClient("status", readiness_timeout=readiness_timeout)
    try:
        online = [row for row in rows if row["offline_since"] is None]
        answers = await asyncio.gather(*(client.ready(node_url(r["ip_address"], r["server_port"])) for r in online))
    finally:
        await client.aclose()
    ready = {row["id"]: answer for row, answer in zip(online, answers)}
    return [NodeStatus(id=row["id"], fleet=row["fleet"], region=row["region"],
                       address=f"{row['ip_address']}:{row['server_port']}", peer_id=row["peer_id"], cpu=row["cpu"],
                       memory=row["memory"],
                       heartbeat_age_s=row["heartbeat_age"].total_seconds() if row["heartbeat_age"] else None,
                       offline=row["offline_since"] is not None, ready=ready.get(row["id"]))
            for row in rows]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def format_status(nodes: list[NodeStatus]) -> str:
    """One block per fleet: a summary line, then one line per server."""
    if not nodes:
        return "no servers registered (nodes_ecs is empty for these fleets)"
    by_fleet: dict[str, list[NodeStatus]] = defaultdict(list)
    for node in nodes:
        by_fleet[node.fleet].append(node)
    lines = []
    for fleet, members in sorted(by_fleet.items()):
        regions = sorted({node.region for node in members})
        ready = sum(1 for node in members if node.ready)
        lines.append(f"fleet {fleet}: {len(members)} server(s), {ready} ready, regions {', '.join(regions)}")
        lines.append(f"  {'id':>5} {'region':<16} {'address':<22} {'cpu':>4} {'mem MB':>7} {'state':<8} "
                     f"{'heartbeat':<10} peer")
        for node in members:
            state = "offline" if node.offline else ("ready" if node.ready else "unready")
            lines.append(f"  {node.id:>5} {node.region:<16} {node.address:<22} {node.cpu:>4} {node.memory:>7} "
                         f"{state:<8} {_age(node.heartbeat_age_s):<10} {node.peer_id[:20]}…")
    return "\n".join(lines)
