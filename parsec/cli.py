"""The ``parsec`` command: demo, testbed, server, scheduler, fleet, report, simulate, migrate.

Flags override ``PARSEC_*`` environment variables, which override defaults; invalid
settings end the command with one readable line per problem (exit 2), never a trace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings, TestbedSettings, load, peers_option


def _network_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", choices=["testbed", "amino", "custom"], help="which DHT to join (default testbed)")
    parser.add_argument("--protocol-prefix", help="kad protocol prefix (default /ipfs → /ipfs/kad/1.0.0)")
    parser.add_argument("--bootstrap", help="comma-separated bootstrap multiaddrs (…/p2p/<id>)")
    parser.add_argument("--bootstrap-file", help="file with one bootstrap multiaddr per line")


def _network(args: argparse.Namespace) -> NetworkSettings:
    return load(NetworkSettings, prefix="PARSEC_", network=args.network, protocol_prefix=args.protocol_prefix,
                bootstrap_peers=args.bootstrap, bootstrap_file=args.bootstrap_file,
                latency_matrix=getattr(args, "latency", None))



def cmd_demo(args: argparse.Namespace) -> int:
    from parsec import demo

    return demo.run(args)


def cmd_testbed(args: argparse.Namespace) -> int:
    """Start a testbed on Ray, write its bootstrap file, run until interrupted."""
    import ray

    from parsec.demo import start_ray
    from parsec.deploy import start_testbed

    settings = load(TestbedSettings, **peers_option(args.peers), processes=args.processes, seed=args.seed,
                    unreachable=args.unreachable, churn_session=args.churn)
    network = _network(args)
    start_ray(args.ray_address)
    testbed = start_testbed(settings, network.protocol_id, name=args.name, latency=network.latency_model())
    network.bootstrap_file.parent.mkdir(parents=True, exist_ok=True)
    network.bootstrap_file.write_text("\n".join(testbed.bootstrap_addrs(args.bootstrap_count)) + "\n")
    print(f"bootstrap addresses written to {network.bootstrap_file}; Ctrl-C stops the testbed", flush=True)
    try:
        _wait_for_signal()
    finally:
        testbed.stop()
        ray.shutdown()
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """Run one server in the foreground (no Ray): peer, HTTP API, registration."""
    from parsec.server.runtime import ServerRuntime

    server = load(ServerSettings, fleet=args.fleet, server_host=args.server_host, server_port=args.server_port,
                  peer_host=args.peer_host, peer_port=args.peer_port, startup_delay=args.startup_delay)
    runtime = ServerRuntime(server, _network(args), load(DatabaseSettings))
    status = runtime.start()
    print(f"parsec server (fleet {server.fleet}) peer {status.peer_id} on port {status.peer_port}; "
          f"HTTP on {status.http_host}:{status.http_port}", flush=True)
    try:
        _wait_for_signal()
    finally:
        runtime.stop()
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from parsec.scheduler import job

    loops = job.settings_list(args)
    results = asyncio.run(job.run_loops(loops, load(DatabaseSettings), args.metrics_port))
    print(job.finished_line(results))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from parsec.store.db import connect_pool
    from parsec.store.migrations import apply_migrations, migrate_down

    async def run() -> None:
        pool = await connect_pool(load(DatabaseSettings))
        try:
            if args.down is not None:
                done = await migrate_down(pool, args.down)
                print(f"rolled back: {done or 'nothing'}")
            else:
                done = await apply_migrations(pool)
                print(f"applied: {done or 'nothing (up to date)'}")
        finally:
            await pool.close()

    asyncio.run(run())
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def build_parser() -> argparse.ArgumentParser:
    from parsec import demo
    from parsec.analysis import command as report_command
    from parsec.fleet_cli import add_fleet_commands
    from parsec.scheduler import job

    parser = argparse.ArgumentParser(prog="parsec", description="DHT lookup performance measurement on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="the whole loop on this machine, then a summary")
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("testbed", help="start a local DHT of real py-libp2p peers on Ray")
    p.add_argument("--peers", help="number of py peers (default 200) or a mix, e.g. go=300,js=100,py=100")
    p.add_argument("--latency", help="emulate WAN latency: 'default' or a matrix JSON file (default off)")
    p.add_argument("--unreachable", type=float,
                   help="share of routing-table peers that never answer (default 0.45, the public DHT's)")
    p.add_argument("--churn", help="median online session of a testbed peer (py, Go, js), e.g. 2h (the default, the public "
                                   "DHT's); 0 disables churn")
    p.add_argument("--processes", type=int, help="shard actors (default 2)")
    p.add_argument("--seed", type=int, help="reproducible peer identities")
    p.add_argument("--name", default="testbed", help="actor name prefix")
    p.add_argument("--bootstrap-count", type=int, default=4)
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    _network_args(p)
    p.set_defaults(func=cmd_testbed)

    p = commands.add_parser("server", help="run one parsec server in the foreground")
    p.add_argument("--fleet")
    p.add_argument("--server-host")
    p.add_argument("--server-port", type=int)
    p.add_argument("--peer-host")
    p.add_argument("--peer-port", type=int)
    p.add_argument("--startup-delay")
    _network_args(p)
    p.set_defaults(func=cmd_server)

    p = commands.add_parser("scheduler", help="run a scheduler in the foreground")
    job.add_arguments(p)
    p.set_defaults(func=cmd_scheduler)

    p = commands.add_parser("fleet", help="fleets on a Ray cluster: status, deploy, teardown")
    add_fleet_commands(p)

    p = commands.add_parser("report", help="run the analysis notebooks: HTML report and PNG figures")
    report_command.add_arguments(p)
    p.set_defaults(func=report_command.run)

    p = commands.add_parser("migrate", help="apply pending database migrations")
    p.add_argument("--down", type=int, metavar="VERSION", help="roll back to this version")
    p.set_defaults(func=cmd_migrate)

    from parsec.sim.cli import add_simulate_command

    add_simulate_command(commands)  # parsec simulate
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a readable last line instead of a trace
        from parsec.store.db import StoreError

        if args.verbose or not isinstance(error, (StoreError, RuntimeError, TimeoutError, OSError)):
            raise
        print(f"parsec {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
