"""Fleets on a Ray cluster: server actors placed by region, redeployed idempotently, torn down.

A fleet is declared, not appended to: ``deploy`` makes the cluster hold exactly
``servers_per_region`` server actors of the fleet in each named region — it keeps the ones
already running with the same configuration, replaces those whose configuration changed,
starts the missing ones and stops the ones no longer declared. Rerunning it with the same
arguments therefore starts nothing and writes no new ``nodes_ecs`` rows.

Actors are named ``fleet:<fleet>:<region>:<index>`` (namespace ``parsec``) and ask for a
sliver of the ``region:<region>`` custom resource, so Ray puts them only on nodes of that
region (``cluster.yaml`` gives every node type its region resource). Whatever Ray
decides, the server reports the region, CPU, memory and IP of the node it landed on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ray
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parsec.cluster.connect import NAMESPACE
from parsec.cluster.deploy import deploy_server, stop_servers, wait_ready
from parsec.config import CsvList, DatabaseSettings, NetworkSettings, Seconds, ServerSettings, known_fleet
from parsec.server.actor import ServerActorConfig
from parsec.server.nodeinfo import region_resource

NAME_PREFIX = "fleet"
# Each server asks for this much of its region's resource: a node declaring `region:x: 1`
# holds up to 1,000 servers, so the resource selects nodes without capping how many.
REGION_SHARE = 0.001


class FleetError(RuntimeError):
    """A fleet request that cannot be carried out, with a message for the user."""


class FleetSettings(BaseSettings):
    """What ``jobs/deploy_fleet.py`` deploys: a fleet, its regions, servers per region."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_FLEET_", extra="ignore")

    fleet: str = "default"
    regions: CsvList = Field(min_length=1)
    servers_per_region: int = Field(1, ge=1, le=64)
    ready_timeout: Seconds = 300.0
    wait_for_nodes: bool = Field(False, description="regions no node offers yet are awaited (autoscaling), "
                                 "not an error")

    @field_validator("fleet")
    @classmethod
    def _known_fleet(cls, value: str) -> str:
        return known_fleet(value)

    @field_validator("regions")
    @classmethod
    def _region_names(cls, value: list[str]) -> list[str]:
        for region in value:
            if ":" in region or not region.replace("-", "").isalnum():
                raise ValueError(f"bad region name {region!r} (use e.g. eu-central-1)")
        if len(set(value)) != len(value):
            raise ValueError("a region is listed twice")
        return value


@dataclass(frozen=True)
class Placement:
    name: str
    region: str


def actor_name(fleet: str, region: str, index: int) -> str:
    return f"{NAME_PREFIX}:{fleet}:{region}:{index}"


def parse_actor_name(name: str) -> tuple[str, str, int] | None:
    """(fleet, region, index) of a fleet actor's name; None for any other actor."""
    parts = name.split(":")
    if len(parts) != 4 or parts[0] != NAME_PREFIX or not parts[3].isdigit():
        return None
    return parts[1], parts[2], int(parts[3])


def plan_fleet(fleet: str, regions: list[str], per_region: int) -> list[Placement]:
    """Pure: the actors a fleet consists of, region by region."""
    return [Placement(actor_name(fleet, region, i), region) for region in regions for i in range(per_region)]


def missing_regions(regions: list[str], cluster_resources: dict) -> list[str]:
    """Pure: the regions no node of the cluster offers a resource for."""
    return [region for region in regions if cluster_resources.get(region_resource(region), 0) <= 0]


@dataclass
class FleetReport:
    """What a deploy or teardown did, actor by actor."""

    fleet: str
    actions: dict[str, str] = field(default_factory=dict)  # name → created | kept | replaced | removed
    statuses: list[dict] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for value in self.actions.values() if value == action)


def fleet_actor_names(fleet: str | None = None) -> list[str]:
    """Names of the live fleet actors in the parsec namespace (of one fleet, or all)."""
    names = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        parsed = parse_actor_name(entry["name"])
        if entry["namespace"] == NAMESPACE and parsed and (fleet is None or parsed[0] == fleet):
            names.append(entry["name"])
    return sorted(names)


def server_config(name: str, fleet: str, region: str, server: ServerSettings, network: NetworkSettings,
                  database: DatabaseSettings, bootstrap: list[str]) -> ServerActorConfig:
    """A placed server's configuration: its fleet, and the region it is placed for — which
    wins over what the Ray node says (a node may offer several ``region:*`` resources) and
    over the region its peer id would have under WAN emulation."""
    return ServerActorConfig(name=name, server=server.model_copy(update={"fleet": fleet, "region": region}),
                             network=network, database=database, bootstrap=bootstrap, bind_node_ip=True)


def deploy(settings: FleetSettings, server: ServerSettings, network: NetworkSettings, database: DatabaseSettings,
           progress=print) -> FleetReport:
    """Converge the cluster on the declared fleet, wait until every server is ready."""
    missing = missing_regions(settings.regions, ray.cluster_resources())
    if missing and not settings.wait_for_nodes:
        offered = sorted(k for k in ray.cluster_resources() if k.startswith("region:")) or ["none"]
        raise FleetError(f"no Ray node offers {', '.join(region_resource(r) for r in missing)} "
                         f"(offered: {', '.join(offered)}); start nodes with that resource or pass --wait-for-nodes")
    bootstrap = network.resolved_bootstrap()
    if not bootstrap:
        raise FleetError(network.missing_bootstrap_hint())
    report = FleetReport(settings.fleet)
    existing = set(fleet_actor_names(settings.fleet))
    handles = []
    for placement in plan_fleet(settings.fleet, settings.regions, settings.servers_per_region):
        config = server_config(placement.name, settings.fleet, placement.region, server, network, database, bootstrap)
        action = "created"
        if placement.name in existing:
            handle = ray.get_actor(placement.name, namespace=NAMESPACE)
            if ray.get(handle.status.remote(), timeout=60)["fingerprint"] == config.fingerprint():
                report.actions[placement.name] = "kept"
                handles.append(handle)
                continue
            stop_servers([handle])
            _wait_released(placement.name)
            action = "replaced"
        handles.append(deploy_server(config, resources={region_resource(placement.region): REGION_SHARE}))
        report.actions[placement.name] = action
    extras = sorted(existing - set(report.actions))
    if extras:
        stop_servers([ray.get_actor(name, namespace=NAMESPACE) for name in extras])
        report.actions.update({name: "removed" for name in extras})
    progress(f"fleet {settings.fleet}: {report.count('created')} created, {report.count('kept')} kept, "
             f"{report.count('replaced')} replaced, {report.count('removed')} removed; waiting for readiness")
    report.statuses = wait_ready(handles, timeout=settings.ready_timeout, progress=progress)
    return report


def teardown(fleet: str, progress=print) -> FleetReport:
    """Stop every server of the fleet gracefully (each marks its nodes_ecs row offline)."""
    report = FleetReport(fleet)
    names = fleet_actor_names(fleet)
    handles = [ray.get_actor(name, namespace=NAMESPACE) for name in names]
    asked = [handle.status.remote() for handle in handles]  # all at once: a slow server holds up no other
    if asked:
        ray.wait(asked, num_returns=len(asked), timeout=30)
    for name, status in zip(names, asked):
        try:
            report.statuses.append(ray.get(status, timeout=0))
        except Exception as error:  # a dead or silent actor is still stopped below
            progress(f"{name}: no status ({type(error).__name__})")
    progress(f"fleet {fleet}: stopping {len(handles)} server(s)")
    stop_servers(handles)
    report.actions = {name: "removed" for name in names}
    return report


def _wait_released(name: str, timeout: float = 30.0) -> None:
    """After a kill, wait until Ray has released the actor's name so it can be reused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)
    raise FleetError(f"actor {name} did not go away within {timeout:.0f}s")


def format_report(report: FleetReport) -> str:
    """A table of the fleet's servers: where they run, what they cost."""
    lines = [f"{'server':<34} {'action':<8} {'node ip':<15} {'http':<21} {'node':>5} {'rss MB':>7} "
             f"{'cpu s':>6} {'up s':>6}  peer"]
    by_name = {status["name"]: status for status in report.statuses}
    for name, action in sorted(report.actions.items()):
        s = by_name.get(name)
        if s is None:
            lines.append(f"{name:<34} {action:<8}")
            continue
        http = f"{s['http_host']}:{s['http_port']}"
        lines.append(f"{name:<34} {action:<8} {s['node_ip']:<15} {http:<21} {s['node_id'] or '-':>5} "
                     f"{s['rss_mb']:>7.0f} {s['cpu_seconds']:>6.1f} {s['uptime_seconds']:>6.0f}  {s['peer_id'][:16]}…")
    return "\n".join(lines)
