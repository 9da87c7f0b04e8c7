"""Command lines of fleet deployment: ``jobs/deploy_fleet.py``, ``jobs/teardown.py`` and
``parsec fleet deploy|teardown|status``.

Deploy and teardown run where Ray runs: as a Ray job (``ray job submit -- python
jobs/deploy_fleet.py …``, which sets ``RAY_ADDRESS``) or with ``--ray-address``. They never
start a private Ray cluster: detached servers placed in one would die with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from parsec.cluster.fleet_status import collect, format_status
from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings, load
from parsec.console import say

# parsec.cluster.connect and .fleet import Ray (seconds): imported by the commands that use
# it, not by `parsec fleet status` or every `parsec` start, which builds these parsers


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", help="fleet label (env PARSEC_FLEET_FLEET; default, optprov, fullrt, …)")
    parser.add_argument("--regions", help="comma-separated regions, e.g. eu-central-1,us-west-1 (env PARSEC_FLEET_REGIONS)")
    parser.add_argument("--servers-per-region", type=int, help="server actors per region (default 1)")
    parser.add_argument("--ready-timeout", help="how long to wait for readiness (default 5m)")
    parser.add_argument("--wait-for-nodes", action="store_true", default=None,
                        help="regions no node offers yet are awaited (an autoscaler will add them)")
    parser.add_argument("--heartbeat-interval", help="server heartbeat period (default 60s)")
    parser.add_argument("--network", choices=["testbed", "amino", "custom"], help="which DHT (default testbed)")
    parser.add_argument("--protocol-prefix", help="kad protocol prefix (default /ipfs → /ipfs/kad/1.0.0)")
    parser.add_argument("--bootstrap", help="comma-separated bootstrap multiaddrs (…/p2p/<id>)")
    parser.add_argument("--bootstrap-file", help="file with one bootstrap multiaddr per line")
    parser.add_argument("--latency", help="testbed only: emulate WAN latency ('default' or a matrix file)")
    parser.add_argument("--ray-address", help="the Ray cluster (default RAY_ADDRESS, set for Ray jobs)")


def _connect(address: str | None) -> None:
    from parsec.cluster.connect import start_ray

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SystemExit("no Ray cluster: run this as a Ray job (ray job submit -- python jobs/…) "
                         "or pass --ray-address")
    start_ray(address)


def _server_settings(args: argparse.Namespace) -> ServerSettings:
    """Env/flags, with ephemeral ports unless set: several servers may share a node."""
    server = load(ServerSettings, heartbeat_interval=args.heartbeat_interval)
    ports = {name: 0 for name in ("server_port", "peer_port") if name not in server.model_fields_set}
    return server.model_copy(update=ports)


def deploy_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy_fleet", description="Place a fleet of parsec servers by region.")
    add_deploy_arguments(parser)
    return _exit_code(run_deploy, parser.parse_args(argv))


def run_deploy(args: argparse.Namespace) -> int:
    from parsec.cluster.fleet import FleetError, FleetSettings, deploy, format_report

    settings = load(FleetSettings, fleet=args.fleet, regions=args.regions, servers_per_region=args.servers_per_region,
                    ready_timeout=args.ready_timeout, wait_for_nodes=args.wait_for_nodes)
    network = load(NetworkSettings, prefix="PARSEC_", network=args.network, protocol_prefix=args.protocol_prefix,
                   bootstrap_peers=args.bootstrap, bootstrap_file=args.bootstrap_file, latency_matrix=args.latency)
    database = load(DatabaseSettings)
    if not database.host_given:
        raise SystemExit("set PARSEC_DATABASE_HOST (and _PORT, _NAME, _USER, _PASSWORD): servers on every node "
                         "must reach the database")
    server = _server_settings(args)
    _connect(args.ray_address)
    try:
        report = deploy(settings, server, network, database, progress=say)
    except (FleetError, TimeoutError) as error:
        print(f"deploy_fleet: {error}", file=sys.stderr, flush=True)
        return 1
    print(format_report(report), flush=True)
    print(f"fleet {settings.fleet}: {len(report.statuses)} server(s) ready in "
          f"{len(settings.regions)} region(s) on network {network.network} ({network.protocol_id})", flush=True)
    return 0


def add_teardown_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", required=True, help="the fleet to stop")
    parser.add_argument("--ray-address", help="the Ray cluster (default RAY_ADDRESS, set for Ray jobs)")


def teardown_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teardown", description="Stop a fleet's servers gracefully.")
    add_teardown_arguments(parser)
    return _exit_code(run_teardown, parser.parse_args(argv))


def run_teardown(args: argparse.Namespace) -> int:
    from parsec.cluster.fleet import format_report, teardown

    _connect(args.ray_address)
    report = teardown(args.fleet, progress=say)
    if not report.actions:
        print(f"fleet {args.fleet}: no servers running", flush=True)
        return 0
    print(format_report(report), flush=True)
    print(f"fleet {args.fleet}: {len(report.actions)} server(s) stopped and marked offline", flush=True)
    return 0


def status_main(args: argparse.Namespace) -> int:
    fleets = [f.strip() for f in args.fleets.split(",")] if args.fleets else None
    nodes = asyncio.run(collect(load(DatabaseSettings), fleets, include_offline=args.all))
    print(format_status(nodes))
    return 0


def add_fleet_commands(parser: argparse.ArgumentParser) -> None:
    """``parsec fleet status|deploy|teardown``."""
    commands = parser.add_subparsers(dest="fleet_command", required=True)
    p = commands.add_parser("status", help="fleets, servers, regions, readiness, last heartbeat (from the database)")
    p.add_argument("--fleets", help="comma-separated fleets (default: all)")
    p.add_argument("--all", action="store_true", help="include servers marked offline")
    p.set_defaults(func=status_main)
    p = commands.add_parser("deploy", help="place a fleet on a Ray cluster (as jobs/deploy_fleet.py)")
    add_deploy_arguments(p)
    p.set_defaults(func=run_deploy)
    p = commands.add_parser("teardown", help="stop a fleet gracefully (as jobs/teardown.py)")
    add_teardown_arguments(p)
    p.set_defaults(func=run_teardown)


def _exit_code(run, args: argparse.Namespace) -> int:
    """Run a job body; settings errors (SystemExit with text) become one line and exit 2."""
    try:
        return run(args)
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr, flush=True)
            return 2
        raise


