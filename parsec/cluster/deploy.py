"""Ray placement of parsec's long-lived parts: testbed shards and server fleets.

``ray.remote(**options)`` is applied here and only here (as Ray Serve does): the actor
classes stay plain and testable. Servers are named, detached actors in namespace
``parsec`` and restarted on crash; a later job finds them with ``ray.get_actor``.
Actors reserve no CPU for scheduling (``num_cpus=0``): a testbed and a fleet share a
two-core machine, and their real cost is reported by the benchmarks instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ray

from parsec.cluster.connect import NAMESPACE
from parsec.config import TestbedSettings
from parsec.model.stale import listing_probability
from parsec.net.wire import WirePeer
from parsec.server.actor import ParsecServerActor, ServerActorConfig
from parsec.testbed.actor import ExternalShardActor, TestbedShardActor
from parsec.testbed.ghosts import ghost_count, ghosts
from parsec.testbed.shard import ShardSpec, peer_multiaddr

_SERVER_OPTIONS = dict(lifetime="detached", namespace=NAMESPACE, max_restarts=-1, max_task_retries=0,
                       num_cpus=0, max_concurrency=4)
PEERS_PER_PROCESS = {"go": None, "js": 500}
"""Peers per external program: Go uses every core from one process; a Node process is one
thread, so js peers are spread over processes of at most 500 (their routing-table fill is
the slowest part of a large testbed's start)."""
_SHARD_OPTIONS = dict(lifetime="detached", namespace=NAMESPACE, max_restarts=0, num_cpus=0)

ServerActor = ray.remote(**_SERVER_OPTIONS)(ParsecServerActor)
ShardActor = ray.remote(**_SHARD_OPTIONS)(TestbedShardActor)
ExternalActor = ray.remote(**_SHARD_OPTIONS)(ExternalShardActor)


@dataclass
class TestbedHandle:
    """A running testbed: its shard actors and every peer's address."""

    __test__ = False
    shards: list = field(default_factory=list)
    py_shards: int = 0  # the first shards hold py peers; the rest run Go / Node programs
    external: dict = field(default_factory=dict)  # "go" / "js" → the (first) program of that implementation
    ghosts: list[WirePeer] = field(default_factory=list)  # in routing tables, never answering
    peers: list[WirePeer] = field(default_factory=list)
    ready_seconds: float = 0.0

    def bootstrap_addrs(self, count: int = 4) -> list[str]:
        """A few peers spread over the shards, as ``/ip4/…/p2p/…`` strings."""
        step = max(len(self.peers) // count, 1)
        return [peer_multiaddr(peer) for peer in self.peers[::step][:count]]

    def stop(self) -> None:
        for shard in self.shards:
            try:
                ray.get(shard.stop.remote(), timeout=30)
            except Exception:
                pass
            ray.kill(shard)


def start_testbed(settings: TestbedSettings, protocol_id: str, name: str = "testbed",
                  progress=print, latency=None) -> TestbedHandle:
    """Start the testbed's peers — py peers over ``settings.processes`` shard actors, Go
    and Node.js peers (``settings.mix``) in one program each — and fill every table."""
    started = time.monotonic()
    mix = settings.composition()
    py_peers = mix.get("py", 0)
    count = min(settings.processes, py_peers)
    sizes = [py_peers // count + (1 if i < py_peers % count else 0) for i in range(count)] if count else []
    shards = [
        ShardActor.options(name=f"{name}-shard-{i}").remote(
            ShardSpec(i, size, settings.host, protocol_id, settings.k, settings.seed, latency,
                      settings.slow_fraction, settings.slow_delay, settings.churn_session))
        for i, size in enumerate(sizes)
    ]
    handle = TestbedHandle(shards=shards, py_shards=len(shards))
    labels = [f"py-{i}={size}" for i, size in enumerate(sizes)]
    for implementation in ("go", "js"):
        parts = _split(mix.get(implementation, 0), PEERS_PER_PROCESS[implementation])
        for part, size in enumerate(parts):
            spec = ShardSpec(len(shards), size, settings.host, protocol_id, settings.k, settings.seed, latency,
                             churn_session=settings.churn_session)
            suffix = f"-{part}" if part else ""
            actor = ExternalActor.options(name=f"{name}-{implementation}{suffix}").remote(implementation, spec)
            shards.append(actor)
            handle.external.setdefault(implementation, actor)  # the first program of each
            labels.append(f"{implementation}{suffix}={size}")
    batches, seconds = _gather_timed([shard.start.remote() for shard in shards])
    progress("testbed: started " + ", ".join(f"{label} in {t:.1f}s" for label, t in zip(labels, seconds)))
    for batch in batches:
        handle.peers.extend(batch)
    everyone = list(handle.peers)
    listing = 1.0
    if settings.unreachable > 0:
        if not count:
            raise ValueError("unreachable peers need at least one py shard to host their black hole")
        hole = ray.get(shards[0].start_black_hole.remote())
        handle.ghosts = ghosts(ghost_count(len(handle.peers), settings.unreachable), hole, settings.seed)
        everyone += handle.ghosts
        listing = listing_probability(len(handle.peers), len(handle.ghosts), settings.stale_entries)
        progress(f"testbed: {len(handle.ghosts)} unreachable peers ({settings.unreachable:.0%}) behind {hole}, "
                 f"≈{min(settings.stale_entries, settings.unreachable):.0%} of table entries")
    progress(f"testbed: {len(handle.peers)} peers listening ({', '.join(f'{k}={v}' for k, v in mix.items())}); "
             "filling routing tables")
    _, seconds = _gather_timed([shard.fill.remote(everyone, len(handle.ghosts), listing) for shard in shards])
    progress("testbed: filled " + ", ".join(f"{label} in {t:.1f}s" for label, t in zip(labels, seconds)))
    handle.ready_seconds = time.monotonic() - started
    progress(f"testbed: {len(handle.peers)} peers ready in {handle.ready_seconds:.1f}s")
    if settings.churn_session > 0 and shards:
        ray.get([shard.start_churn.remote() for shard in shards])
        progress(f"testbed: churn on for all {len(handle.peers)} peers ({', '.join(labels)}; "
                 f"median session {settings.churn_session:g}s)")
    return handle


def _split(total: int, per_process: int | None) -> list[int]:
    """``total`` peers over as few processes as hold at most ``per_process`` each, evenly."""
    if total <= 0:
        return []
    parts = 1 if per_process is None else -(-total // per_process)
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _gather_timed(refs: list) -> tuple[list, list[float]]:
    """``ray.get`` of every ref, with the seconds each took to finish (where time goes)."""
    started = time.monotonic()
    finished: dict = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        finished[done[0]] = time.monotonic() - started
    return ray.get(list(refs)), [finished[ref] for ref in refs]


def cut_off_regions(testbed: TestbedHandle, servers: list, regions: list[str]) -> int:
    """Cut these regions off the emulated WAN (``[]`` restores every region): every kad
    message of a py testbed peer or a server to or from a peer of those regions is dropped
    from now on (``parsec.model.latency``, "Outage"). Go and js peers do not take part. Returns
    how many py testbed peers are in the cut regions."""
    peers = ray.get([shard.cut_off.remote(list(regions)) for shard in testbed.shards[:testbed.py_shards]])
    ray.get([server.cut_off.remote(list(regions)) for server in servers])
    return sum(peers)


def deploy_server(config: ServerActorConfig, resources: dict | None = None):
    """Place (or find) the named server actor; rerunning with the same name is a no-op."""
    options = {"name": config.name, "get_if_exists": True}
    if resources:
        options["resources"] = resources
    return ServerActor.options(**options).remote(config)


def wait_ready(actors: list, timeout: float = 120.0, progress=print) -> list[dict]:
    """Poll server actors until every one is ready and has written a heartbeat (so a
    scheduler started now discovers it); raises TimeoutError with details. An actor Ray
    is restarting (after a crash) counts as not ready yet."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        statuses = [_status_or_restarting(actor) for actor in actors]
        ready = sum(1 for status in statuses if status["ready"] and status["heartbeats"] > 0)
        line = f"servers ready: {ready}/{len(actors)}"
        if line != last:
            progress(line)
            last = line
        if ready == len(actors):
            return statuses
        if time.monotonic() > deadline:
            problems = "; ".join(f"{s['name']}: {s['error'] or 'rt=' + str(s['routing_table_size'])}"
                                 for s in statuses if not (s["ready"] and s["heartbeats"]))
            raise TimeoutError(f"servers not ready after {timeout:.0f}s: {problems}")
        time.sleep(0.5)


def _status_or_restarting(actor) -> dict:
    try:
        return ray.get(actor.status.remote())
    except ray.exceptions.ActorUnavailableError as error:  # restarting: Ray retries nothing (max_task_retries=0)
        return {"name": "?", "ready": False, "heartbeats": 0, "error": f"restarting ({error.__class__.__name__})",
                "routing_table_size": 0}


STOP_TIMEOUT = 30.0
"""Seconds the servers of one ``stop_servers`` call get, together, to stop gracefully."""


def stop_servers(actors: list) -> None:
    """Stop servers gracefully, all at once (each marks its row offline and closes its
    peer; those not done within ``STOP_TIMEOUT`` are cut short), then end their actors."""
    stopping = []
    for actor in actors:
        try:
            stopping.append(actor.stop.remote())
        except Exception:  # an actor already gone is ended below all the same
            pass
    if stopping:
        ray.wait(stopping, num_returns=len(stopping), timeout=STOP_TIMEOUT)
    for actor in actors:
        ray.kill(actor, no_restart=True)
