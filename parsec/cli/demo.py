"""``parsec demo``: the whole measurement loop on one machine, then a summary.

Ray (joined via ``--ray-address``/``RAY_ADDRESS``, else a private local cluster), an
embedded PostgreSQL (unless ``PARSEC_DATABASE_HOST`` names one), a testbed of real
py-libp2p peers, a fleet of server actors that join it the honest way, and the scheduler
submitted as a Ray job. Everything it started is stopped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from parsec.config import (
    FLEETS,
    DatabaseSettings,
    NetworkSettings,
    ServerSettings,
    TestbedSettings,
    load,
    peers_option,
)
from parsec.console import say
from parsec.kad.fleets import ENGINE_STRATEGIES
from parsec.store.embedded import EmbeddedPostgres

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", default="200",
                        help="testbed peers (default 200 py peers) or a mix, e.g. go=100,js=50,py=100")
    parser.add_argument("--shards", type=int, default=2, help="testbed processes (Ray actors)")
    parser.add_argument("--fleets", default=",".join(ENGINE_STRATEGIES),
                        help="comma-separated fleets, each measured by its own scheduler loop, compared against "
                             f"'default' (default: {','.join(ENGINE_STRATEGIES)}; any of {','.join(FLEETS)})")
    parser.add_argument("--servers", type=int, default=3, help="servers per fleet (default 3)")
    parser.add_argument("--rounds", type=int, default=6, help="scheduler rounds per fleet (default 6)")
    parser.add_argument("--interval", default="2s", help="round interval (default 2s)")
    parser.add_argument("--probes", type=int, default=1, help="sequential retrievals per server per round (default 1)")
    parser.add_argument("--unreachable", type=float,
                        help="share of routing-table peers that never answer (default 0.45, the public DHT's)")
    parser.add_argument("--churn", help="median online session of a testbed peer, e.g. 2h (the default, the "
                                        "public DHT's); 0 disables churn")
    parser.add_argument("--latency", default="default",
                        help="emulated WAN latency: 'default' (public inter-region RTTs), a matrix JSON file, or 'off'")
    parser.add_argument("--state-dir", default=".parsec", help="where the database and Parquet files go")
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"), help="join this Ray cluster")
    parser.add_argument("--keep", action="store_true", help="leave everything running")


def fleets_of(args: argparse.Namespace) -> list[str]:
    return [f.strip() for f in args.fleets.split(",") if f.strip()]


def submit_scheduler(client, args, database: DatabaseSettings, parquet_dir: Path) -> str:
    entry = REPO_ROOT / "jobs" / "scheduler.py"
    command = [sys.executable, str(entry)] if entry.exists() else [sys.executable, "-m", "parsec.scheduler.job"]
    loops = [arg for fleet in fleets_of(args) for arg in ("--loop", fleet)]  # one loop per fleet, side by side
    command += [*loops, "--rounds", str(args.rounds), "--interval", str(args.interval),
                "--probes", str(args.probes), "--parquet-dir", str(parquet_dir),
                "--spool-dir", str(parquet_dir.parent / "spool")]
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in database.model_dump().items()}
    try:
        return client.submit_job(entrypoint=" ".join(command), runtime_env={"env_vars": env})
    except RuntimeError as error:
        if "No available agent" not in str(error):
            raise
        # Ray's job agent listens on a fixed port (52365) that ray.init cannot change: a
        # second local Ray cluster on this machine leaves its own cluster without one
        raise RuntimeError("Ray's job agent is not running, most likely because another Ray cluster on this "
                           "machine holds its port (52365): stop that cluster, or pass --ray-address to use "
                           "it") from None


def follow_job(client, job_id: str, timeout: float) -> str:
    """Stream the job's output lines until it ends; returns its final status."""
    from ray.job_submission import JobStatus  # Ray only when the demo runs (see `run`)

    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        lines = logs.splitlines()
        for line in lines[seen:]:
            say(f"  scheduler | {line}")
        seen = len(lines)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status)
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            return "TIMEOUT"
        time.sleep(1.0)


def run(args: argparse.Namespace) -> int:
    # imported when the demo runs, not at every `parsec` start (which builds this command's
    # parser): Ray, libp2p and pandas take seconds to import
    import ray

    from parsec.analysis.summary import print_summary
    from parsec.cluster.connect import job_client, start_ray
    from parsec.cluster.deploy import deploy_server, start_testbed, stop_servers, wait_ready
    from parsec.server.actor import ServerActorConfig

    state = Path(args.state_dir).resolve()
    parquet_dir = state / "parquet"
    database = load(DatabaseSettings)
    network = load(NetworkSettings, network="testbed", latency_matrix=args.latency)
    latency = network.latency_model()
    fleets = fleets_of(args)
    embedded = None
    with contextlib.ExitStack() as cleanup:
        if not database.host_given:
            embedded = EmbeddedPostgres(state / "postgres")
            say(f"starting embedded PostgreSQL in {state / 'postgres'}")
            database = embedded.start()
            if not args.keep:
                cleanup.callback(embedded.stop)
        context = start_ray(args.ray_address)
        if not args.keep:
            cleanup.callback(ray.shutdown)
        testbed = start_testbed(load(TestbedSettings, **peers_option(args.peers), processes=args.shards,
                                     unreachable=args.unreachable, churn_session=args.churn),
                                network.protocol_id,
                                name="demo-testbed", progress=say, latency=latency)
        placeable = [r for r, w in zip(latency.regions, latency.weights) if w > 0] if latency else ["local"]
        if not args.keep:
            cleanup.callback(testbed.stop)
        bootstrap = testbed.bootstrap_addrs()
        actors = []
        for fleet in fleets:
            for i in range(args.servers):
                server = ServerSettings(fleet=fleet, server_port=0, peer_port=0, heartbeat_interval=10,
                                        region=placeable[i % len(placeable)])
                config = ServerActorConfig(name=f"demo-{fleet}-{i}", server=server, network=network,
                                           database=database, bootstrap=bootstrap)
                actors.append(deploy_server(config))
        if not args.keep:
            cleanup.callback(stop_servers, actors)
        say(f"deploying {len(actors)} server actor(s) in fleet(s) {', '.join(fleets)}"
            + (f"; WAN latency emulated ({len(placeable)} regions)" if latency else "; no latency emulation"))
        wait_ready(actors, timeout=180, progress=say)
        client = job_client(context, args.ray_address)
        started = datetime.now(timezone.utc)  # the summary is of this run (the database outlives runs)
        job_id = submit_scheduler(client, args, database, parquet_dir)
        say(f"submitted scheduler job {job_id}")
        status = follow_job(client, job_id, timeout=120 + args.rounds * 60)
        say(f"scheduler job {status}")
        asyncio.run(print_summary(database, fleets, since=started))
        print(f"\nParquet dataset: {parquet_dir}")
        note = " (embedded; stopped now, data kept in its directory)" if embedded and not args.keep else ""
        print(f"Database: {database.redacted()}{note}")
        return 0 if status.endswith("SUCCEEDED") else 1
