"""The ``parsec`` command: demo, testbed, server, scheduler, fleet, report, simulate, migrate.

Flags override ``PARSEC_*`` environment variables, which override defaults; invalid
settings end the command with one readable line per problem (exit 2), never a trace.

This package holds the command front-ends — arguments, settings, output. The small
commands (``testbed``, ``server``, ``scheduler``, ``health``, ``migrate``) are here; the
larger ones have a module each: ``demo``, ``fleet`` (also behind ``jobs/deploy_fleet.py`` and
``jobs/teardown.py``), ``report`` and ``simulate``. What they run lives in the room of its
logic (``parsec.cluster``, ``parsec.analysis``, ``parsec.sim``, ``parsec.scheduler``, …).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request

from prometheus_client import start_http_server

from parsec.cli import demo, report
from parsec.cli.fleet import add_fleet_commands
from parsec.cli.simulate import add_simulate_command
from parsec.config import (
    FLEETS,
    DatabaseSettings,
    NetworkSettings,
    ServerSettings,
    TelemetrySettings,
    TestbedSettings,
    load,
    peers_option,
)
from parsec.scheduler import job
from parsec.store.db import StoreError, connect_pool
from parsec.store.migrations import apply_migrations, go_schema_version, migrate_down


def _network_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", choices=["testbed", "amino", "custom"], help="which DHT to join (default testbed)")
    parser.add_argument("--protocol-prefix", help="kad protocol prefix (default /ipfs → /ipfs/kad/1.0.0)")
    parser.add_argument("--bootstrap", help="comma-separated bootstrap multiaddrs (…/p2p/<id>)")
    parser.add_argument("--bootstrap-file", help="file with one bootstrap multiaddr per line")


def _network(args: argparse.Namespace) -> NetworkSettings:
    network = getattr(args, "dht_network", None) or args.network  # `server dht --network`: the Go parsec's place
    return load(NetworkSettings, prefix="PARSEC_", network=network, protocol_prefix=args.protocol_prefix,
                bootstrap_peers=args.bootstrap, bootstrap_file=args.bootstrap_file,
                latency_matrix=getattr(args, "latency", None))



def cmd_demo(args: argparse.Namespace) -> int:
    return demo.run(args)


def cmd_testbed(args: argparse.Namespace) -> int:
    """Start a testbed on Ray, write its bootstrap file, run until interrupted."""
    # imported when the command runs, not at every `parsec` start: Ray and libp2p take seconds
    import ray

    from parsec.cluster.connect import start_ray
    from parsec.cluster.deploy import start_testbed

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
    from parsec.server.runtime import ServerRuntime  # libp2p, trio, hypercorn: only for this command

    if args.server_kind == "ipni":
        print("parsec server ipni: not supported yet: parsec runs DHT servers only (`parsec server dht`)",
              file=sys.stderr)
        return 2
    dht = {name: getattr(args, name, None) for name in _GO_DHT_SETTINGS}
    server = load(ServerSettings, fleet=args.fleet, strategy=args.strategy, server_host=args.server_host,
                  server_port=args.server_port, peer_host=args.peer_host, peer_port=args.peer_port,
                  startup_delay=args.startup_delay, leveldb=args.level_db, firehose_stream=args.firehose_stream,
                  **{f"dht_{name}": value for name, value in dht.items()})
    telemetry = load(TelemetrySettings)
    runtime = ServerRuntime(server, _network(args), load(DatabaseSettings))
    status = runtime.start()
    if telemetry.port is not None:
        start_http_server(telemetry.port, addr=telemetry.host, registry=runtime.metrics.registry)
    print(f"parsec server (fleet {server.fleet}, strategy {server.strategy}) peer {status.peer_id} on port "
          f"{status.peer_port}; "
          f"HTTP on {status.http_host}:{status.http_port}", flush=True)
    try:
        _wait_for_signal()
    finally:
        runtime.stop()
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    loops = job.settings_list(args)
    port, host = job.metrics_address(args)
    return job.report_outcome(asyncio.run(job.run_job(loops, load(DatabaseSettings), port, metrics_host=host)))


def cmd_health(args: argparse.Namespace) -> int:
    """The Go parsec's ``health``: GET http://ADDRESS/readiness; OK and exit 0 on 200."""
    url = f"http://{args.address}/readiness"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        print(f"parsec health: {url}: {reason}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"parsec health: {url}: status code: {status}", file=sys.stderr)
        return 1
    print("OK")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run() -> None:
        pool = await connect_pool(load(DatabaseSettings))
        try:
            if args.down is not None:
                done = await migrate_down(pool, args.down)
                print(f"rolled back: {done or 'nothing'} (the Go parsec's tables stay: they are shared)")
            else:
                done = await apply_migrations(pool)
                print(f"applied: {done or 'nothing (up to date)'}")
            go = await go_schema_version(pool)
            print("Go parsec schema: " + ("none" if go is None else
                                          f"golang-migrate version {go[0]}{' (dirty)' if go[1] else ''}"))
        finally:
            await pool.close()

    asyncio.run(run())
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", help="the fleet label this server registers, free text (env PARSEC_SERVER_FLEET, "
                                   "default 'default')")
    p.add_argument("--strategy", help=", ".join(FLEETS) + " (env PARSEC_SERVER_STRATEGY; "
                                      "default: from PARSEC_SERVER_DHT_OPTPROV/_FULLRT, else the fleet label when it "
                                      "names one, else default)")
    p.add_argument("--server-host", help="HTTP API address (env PARSEC_SERVER_SERVER_HOST, default 127.0.0.1)")
    p.add_argument("--server-port", type=int, help="HTTP API port, at most 32767; 0: a free one in 20000-32767 "
                                                   "(env PARSEC_SERVER_SERVER_PORT, default 7070)")
    p.add_argument("--peer-host", help="libp2p listen address (env PARSEC_SERVER_PEER_HOST, default 127.0.0.1)")
    p.add_argument("--peer-port", type=int, help="libp2p TCP port, at most 32767; 0: a free one in 20000-32767 "
                                                 "(env PARSEC_SERVER_PEER_PORT, default 4001)")
    p.add_argument("--startup-delay", help="not ready before this long after start, e.g. 1m (env "
                                           "PARSEC_SERVER_STARTUP_DELAY, default 0s)")
    p.add_argument("--level-db", help="the Go parsec's datastore path: accepted and unused, provider records are "
                                      "kept in memory (env PARSEC_SERVER_LEVELDB)")
    p.add_argument("--firehose-stream", help="the Go parsec's AWS Firehose stream: not supported, refused when set "
                                             "(env PARSEC_SERVER_FIREHOSE_STREAM)")
    for flag in ("--firehose-region", "--firehose-batch-time", "--firehose-batch-size"):
        p.add_argument(flag, help="the Go parsec's Firehose setting: accepted and unused (no Firehose)")
    for flag in ("--firehose-connection-events", "--firehose-rpc-events"):
        p.add_argument(flag, action=argparse.BooleanOptionalAction,
                       help="the Go parsec's Firehose setting: accepted and unused (no Firehose)")
    _network_args(p)


# `server dht` settings of the Go parsec: CLI name → ServerSettings.dht_<name>
_GO_DHT_SETTINGS = ("optprov", "fullrt", "server_mode", "alpha", "project", "badbits", "denied_cids")
# Go's boolean flags also take `--flag=true|false` (urfave/cli); argparse spells false `--no-flag`
_GO_BOOL_FLAGS = ("--optprov", "--fullrt", "--server-mode", "--firehose-connection-events", "--firehose-rpc-events")


def _go_bool_form(argv: list[str]) -> list[str]:
    """``--flag=false`` → ``--no-flag`` and ``--flag=true`` → ``--flag`` for Go's boolean flags."""
    out = []
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag in _GO_BOOL_FLAGS and value.lower() in ("true", "1", "false", "0"):
            arg = flag if value.lower() in ("true", "1") else "--no-" + flag[2:]
        out.append(arg)
    return out


def _dht_args(dht: argparse.ArgumentParser) -> None:
    dht.add_argument("--optprov", action=argparse.BooleanOptionalAction, default=None,
                     help="optimistic provide: strategy optprov (env PARSEC_SERVER_DHT_OPTPROV)")
    dht.add_argument("--fullrt", action=argparse.BooleanOptionalAction, default=None,
                     help="full routing table: strategy fullrt (env PARSEC_SERVER_DHT_FULLRT)")
    dht.add_argument("--server-mode", action=argparse.BooleanOptionalAction, default=None,
                     help="answer kad requests, a DHT server (env PARSEC_SERVER_DHT_SERVER_MODE; unset: a server, "
                          "parsec's default; --no-server-mode or =false: a DHT client, the Go parsec's default)")
    dht.add_argument("--alpha", type=int, help="lookup concurrency; only 10, go's (env PARSEC_SERVER_DHT_ALPHA)")
    dht.add_argument("--project", help="bootstrap project; only ipfs (env PARSEC_SERVER_DHT_PROJECT)")
    dht.add_argument("--network", dest="dht_network", choices=["testbed", "amino", "custom"],
                     help="which DHT to join, as `server --network` (the Go parsec's place for it)")
    dht.add_argument("--badbits", help="bad-bits deny list: not supported yet, refused when set "
                                       "(env PARSEC_SERVER_DHT_BADBITS)")
    dht.add_argument("--denied-cids", help="denied-CIDs file: not supported yet, refused when set "
                                           "(env PARSEC_SERVER_DHT_DENIED_CIDS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parsec", description="DHT lookup performance measurement on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level and show tracebacks")
    for flag, env, what in _DB_FLAGS:
        parser.add_argument(flag, metavar=flag.split("-")[-1].upper(),
                            help=f"{what} (env {env}; as the Go parsec's global flag, before the command)")
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
    p.add_argument("--bootstrap-count", type=int, default=4,
                   help="testbed peers written to the bootstrap file (default 4)")
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    _network_args(p)
    p.set_defaults(func=cmd_testbed)

    p = commands.add_parser("server", help="run one parsec server in the foreground (`server dht`, the Go parsec's "
                                          "form, is the same)")
    _server_args(p)
    kinds = p.add_subparsers(dest="server_kind", metavar="{dht,ipni}")
    _dht_args(kinds.add_parser("dht", help="a DHT server (what `parsec server` alone runs)"))
    kinds.add_parser("ipni", help="an IPNI (cid.contact) server: not supported yet")
    p.set_defaults(func=cmd_server)

    p = commands.add_parser("scheduler", help="run a scheduler in the foreground")
    job.add_arguments(p)
    p.set_defaults(func=cmd_scheduler)

    p = commands.add_parser("fleet", help="fleets on a Ray cluster: status, deploy, teardown")
    add_fleet_commands(p)

    p = commands.add_parser("report", help="run the analysis notebooks: HTML report and PNG figures")
    report.add_arguments(p)
    p.set_defaults(func=report.run)

    p = commands.add_parser("health", help="is a server ready? GET ADDRESS/readiness: prints OK and exits 0 on 200 "
                                          "(the Go parsec's health command)")
    p.add_argument("address", help="the server's HOST:PORT, e.g. localhost:7070")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    p.set_defaults(func=cmd_health)

    p = commands.add_parser("migrate", help="apply pending database migrations (the Go parsec's tables first, on a "
                                           "fresh database)")
    p.add_argument("--down", type=int, metavar="VERSION", help="roll our tables back to this version (0: none of ours; "
                                                              "the Go parsec's tables stay)")
    p.set_defaults(func=cmd_migrate)

    add_simulate_command(commands)  # parsec simulate
    return parser


_DB_FLAGS = (
    ("--db-host", "PARSEC_DATABASE_HOST", "PostgreSQL host"),
    ("--db-port", "PARSEC_DATABASE_PORT", "PostgreSQL port"),
    ("--db-name", "PARSEC_DATABASE_NAME", "database name"),
    ("--db-user", "PARSEC_DATABASE_USER", "database user"),
    ("--db-password", "PARSEC_DATABASE_PASSWORD", "database password"),
    ("--db-sslmode", "PARSEC_DATABASE_SSL_MODE", "sslmode: disable, allow, prefer, require, verify-ca, verify-full"),
    ("--telemetry-host", "PARSEC_TELEMETRY_HOST", "address `server` and `scheduler` serve Prometheus metrics on "
                                                  "(default localhost)"),
    ("--telemetry-port", "PARSEC_TELEMETRY_PORT", "port `server` and `scheduler` serve Prometheus metrics on "
                                                  "(default: none; the Go parsec's is 6666)"),
)


def _apply_db_flags(args: argparse.Namespace) -> None:
    """The global ``--db-*`` / ``--telemetry-*`` flags win over the environment, for this process
    and its children."""
    for flag, env, _ in _DB_FLAGS:
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            os.environ[env] = value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_go_bool_form(sys.argv[1:] if argv is None else argv))
    _apply_db_flags(args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a readable last line instead of a trace
        if args.verbose or not isinstance(error, (StoreError, RuntimeError, TimeoutError, OSError)):
            raise
        print(f"parsec {args.command}: {error}", file=sys.stderr)
        return 1

