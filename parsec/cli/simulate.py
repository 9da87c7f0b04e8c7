"""``parsec simulate``: the public network on one machine, written as a real run's dataset.

Flags override ``PARSEC_SIM_*`` variables, which override the defaults of
``parsec.sim.settings.SimSettings``. Bad input ends the command with one line and exit
status 2; progress goes to stdout line by line; the Parquet dataset (``--output``) reads
back with ``parsec.store.parquet.read_dataset`` like a real run's.
"""

from __future__ import annotations

import argparse
import sys
import time

from pydantic import ValidationError

from parsec.config import validation_problems
from parsec.console import say
from parsec.sim.settings import SIM_FLEETS, SimSettings

BAD_INPUT = 2


def add_simulate_command(commands) -> None:
    """Register ``parsec simulate`` on the CLI's subcommands. Values are validated by
    ``SimSettings`` (not argparse), so every bad value is one line naming its setting."""
    p = commands.add_parser("simulate", help="simulate the public DHT (25,000 peers) with the same strategy code")
    p.add_argument("--peers", help="reachable DHT servers (default 25000)")
    p.add_argument("--unreachable", help="share of all peer ids that never answer a dial (default 0.45)")
    p.add_argument("--stale-entries", help="share of a routing table's entries that are unreachable ids "
                                           "(default 0.15, RFM 19)")
    p.add_argument("--churn", help="median online session of a peer, e.g. 2h (default); 0 disables churn")
    p.add_argument("--latency", help="region RTT matrix: 'default' (parsec/data/region-rtt.json) or a JSON file")
    p.add_argument("--population", help="where the DHT's peers are: 'public' (default), 'matrix' or "
                                        "region=weight,… e.g. eu-central-1=45,us-east-1=20")
    p.add_argument("--jitter", help="per-message delay σ as a fraction (default 0.1)")
    p.add_argument("--access-rtt", help="median extra round trip per peer, e.g. 20ms (default)")
    p.add_argument("--dial-timeout", help="what a dial to an unreachable peer costs (default 15s)")
    p.add_argument("--dial-refused", help="share of unreachable ids whose dial is refused after one round trip "
                                          "instead of timing out (default 0.4)")
    p.add_argument("--dial-rtts", help="round trips a new connection costs before the request (default 2: "
                                       "QUIC handshake + go-libp2p's wait for identify)")
    p.add_argument("--unresponsive", help="share of reachable peers that never answer a request (default 0)")
    p.add_argument("--fleets", help=f"comma-separated, of {','.join(SIM_FLEETS)} (default all)")
    p.add_argument("--optprov-rules", help="optprov's rules: 'parsec' (default) or 'go' (go-libp2p-kad-dht's)")
    p.add_argument("--regions", help="server regions, comma-separated (default the matrix's seven)")
    p.add_argument("--servers-per-region", help="servers per fleet and region (default 1)")
    p.add_argument("--rounds", help="rounds per fleet (default 14: each region publishes twice)")
    p.add_argument("--interval", help="round interval on the virtual clock (default 1m)")
    p.add_argument("--probes", help="sequential retrievals per server and round (default 1)")
    p.add_argument("--seed", help="the same seed writes the same records (default 0)")
    p.add_argument("--output", help="Parquet dataset directory (default .parsec/sim-parquet); 'none' writes nothing")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace):
    output = None if args.output is None else (None if args.output.lower() == "none" else args.output)
    given = {
        "peers": args.peers, "unreachable": args.unreachable,
        "stale_entries": args.stale_entries, "churn_session": args.churn,
        "latency_matrix": args.latency, "population": args.population, "jitter": args.jitter,
        "access_rtt": args.access_rtt, "dial_timeout": args.dial_timeout, "dial_rtts": args.dial_rtts,
        "dial_refused": args.dial_refused,
        "unresponsive": args.unresponsive, "fleets": args.fleets, "optprov_rules": args.optprov_rules,
        "regions": args.regions, "servers_per_region": args.servers_per_region, "rounds": args.rounds,
        "interval": args.interval, "probes": args.probes, "seed": args.seed, "output": output,
    }
    settings = SimSettings(**{key: value for key, value in given.items() if value is not None})
    if args.output is not None and output is None:
        settings = settings.model_copy(update={"output": None})
    return settings


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, not at every `parsec` start: numpy, pandas, pyarrow
    from parsec.analysis.summary import format_summary
    from parsec.sim.run import SimError, simulate

    try:
        settings = _settings(args)
    except ValidationError as error:
        print(f"parsec simulate: {'; '.join(validation_problems(error, 'PARSEC_SIM_'))}", file=sys.stderr)
        return BAD_INPUT

    started = time.perf_counter()
    try:
        outcome = simulate(settings, say)
    except SimError as error:
        print(f"parsec simulate: {error}", file=sys.stderr)
        return BAD_INPUT
    except OSError as error:
        print(f"parsec simulate: cannot write the dataset: {error}", file=sys.stderr)
        return BAD_INPUT
    stats = outcome.stats
    say(f"done: {stats.records} records, {stats.virtual_s / 60:.1f} min virtual, {stats.rpcs:,} RPCs, "
        f"{stats.churn_leaves} peers left and {stats.churn_returns} came back, "
        f"{time.perf_counter() - started:.1f}s wall")
    print("\n" + format_summary(outcome.summary))
    if outcome.files:
        print(f"\nParquet dataset: {settings.output} ({len(outcome.files)} files; "
              f"parsec.store.parquet.read_dataset reads it)")
    return 0
