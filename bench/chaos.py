"""Chaos run: a bounded campaign on the local cluster with faults injected on a schedule,
then the count that matters — every operation issued, once, in Postgres and in Parquet.

Real parts: a Ray head (RAY_ADDRESS, else a private one on free ports, stopped at the end),
a PostgreSQL of its own (``EmbeddedPostgres``, so it can be stopped and restarted on the
same port), a testbed of py-libp2p peers with the default WAN latency matrix, server actors
in several regions, and the scheduler as a Ray job journaling every operation
(``PARSEC_SCHEDULER_SPOOL_ARCHIVE``). Faults, in order (seconds after the first operation):

  --kill-server-at   a server actor killed mid-provide (Ray restarts it)
  --stop-db-at       Postgres stopped for --db-down seconds, then restarted
  --kill-scheduler-at the scheduler SIGKILLed mid-operation and resubmitted at once
  --cut-at           a region (--cut) cut off for --cut-for seconds, then restored

The resubmitted scheduler ends by itself (``--duration``). Printed and written as JSON:
operations issued (from the journal), rows in Postgres, rows in Parquet, duplicates, lost.

    .venv/bin/python bench/chaos.py [--duration 180] [--json bench/results-chaos.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# parsec.cluster.connect.LOCAL_RAY_ENV, set before anything imports ray: Ray reads them at import
# (without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 a driver dials 127.0.0.1 via the host's IP)
for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                     "RAY_AUTH_MODE": "disabled"}.items():
    os.environ.setdefault(_key, _value)

STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


@contextlib.contextmanager
def ray_head(work: Path):
    """RAY_ADDRESS, else a head of our own on free ports (others may run Ray here too),
    stopped by its PID at the end — never ``ray stop``."""
    if os.environ.get("RAY_ADDRESS"):
        yield os.environ["RAY_ADDRESS"], None
        return
    socks = [socket.socket() for _ in range(7)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    port, agent, agent_grpc, env_agent, metrics, client, dashboard = (s.getsockname()[1] for s in socks)
    for sock in socks:
        sock.close()
    ray = str(Path(sys.executable).with_name("ray"))
    log = (work / "ray-start.log").open("w")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(agent),
         "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(env_agent),
         "--metrics-export-port", str(metrics), "--ray-client-server-port", str(client), "--num-cpus", "2",
         "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(90):
            if head.poll() is not None:
                raise RuntimeError(f"ray start failed: {(work / 'ray-start.log').read_text()[-2000:]}")
            if subprocess.run([ray, "status", "--address", address], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            raise RuntimeError("the Ray head did not come up in 90 s")
        yield address, f"http://127.0.0.1:{dashboard}"  # the job API: asked of the head, not guessed
    finally:
        head.terminate()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
        log.close()


def wait_for(condition, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def fetch(database, sql: str, *args) -> list[dict]:
    from parsec.store.db import fetch_rows

    return fetch_rows(database, sql, *args)


def job_ended(client, job_id: str) -> bool:
    from ray.job_submission import JobStatus

    return client.get_job_status(job_id) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)


class Chaos:
    """The campaign under fault, step by step; ``facts`` collects what each fault did."""

    def __init__(self, args, database, postgres, testbed, actors, client, journal: Path, parquet: Path) -> None:
        self.args, self.database, self.postgres = args, database, postgres
        self.testbed, self.actors, self.client = testbed, actors, client
        self.journal, self.parquet = journal, parquet
        self.facts: dict = {}
        self.jobs: list[str] = []
        env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in database.model_dump().items()}
        env.update(PARSEC_SCHEDULER_SPOOL_DIR=str(journal.parent), PARSEC_SCHEDULER_SPOOL_ARCHIVE="true",
                   PARSEC_SCHEDULER_SPOOL_RETRY="1", PARSEC_SCHEDULER_PARQUET_ROTATE_SECONDS="20")
        self.runtime_env = {"env_vars": env}
        self.command = (f"{sys.executable} {REPO / 'jobs' / 'scheduler.py'} --interval {args.interval} "
                        f"--parquet-dir {parquet}")

    def submit(self, extra: str = "") -> str:
        job = self.client.submit_job(entrypoint=f"{self.command} {extra}".strip(), runtime_env=self.runtime_env)
        self.jobs.append(job)
        say(f"scheduler job {job} submitted {extra}")
        return job

    def in_flight(self, kind: str | None = None, timeout: float = 30.0):
        from parsec.store.journal import read_in_flight

        return wait_for(lambda: next((i for i in read_in_flight(self.journal) if kind in (None, i.kind)), None),
                        timeout)

    def kill_server(self) -> None:
        import ray

        statuses = ray.get([actor.status.remote() for actor in self.actors])
        by_node = {s["node_id"]: actor for s, actor in zip(statuses, self.actors)}
        op = self.in_flight("provide") or self.in_flight()
        if op is None or op.node_id not in by_node:
            self.facts["kill_server"] = {"skipped": "no operation of a known server in flight"}
            return
        ray.kill(by_node[op.node_id], no_restart=False)
        say(f"fault: server actor of node {op.node_id} killed mid-{op.kind} (op {op.op_id[:8]}); Ray restarts it")
        self.facts["kill_server"] = {"node_id": op.node_id, "op_id": op.op_id, "kind": op.kind,
                                     "at_s": round(time.monotonic() - STARTED, 1)}

    def stop_database(self) -> None:
        from parsec.store.journal import read_issued

        paused = time.time()
        self.postgres.pause()
        say(f"fault: Postgres stopped for {self.args.db_down:g}s")
        time.sleep(self.args.db_down)
        self.postgres.resume()
        resumed = time.time()
        say("Postgres restarted")
        during = [i for i in read_issued(self.journal).values() if paused <= i.issued_at.timestamp() <= resumed]
        self.facts["stop_db"] = {"down_s": round(resumed - paused, 1), "operations_issued_while_down": len(during)}

    def kill_scheduler(self, first_job: str, remaining: float) -> None:
        rows = fetch(self.database, "SELECT dependencies FROM schedulers_ecs ORDER BY id DESC LIMIT 1")
        deps = rows[0]["dependencies"]
        pid = int((deps if isinstance(deps, dict) else json.loads(deps))["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if "scheduler.py" not in cmdline:
            raise RuntimeError(f"pid {pid} is not our scheduler: {cmdline!r}")
        op = self.in_flight()
        os.kill(pid, signal.SIGKILL)
        say(f"fault: scheduler (pid {pid}) SIGKILLed with op {op.op_id[:8] if op else '-'} in flight")
        wait_for(lambda: job_ended(self.client, first_job), 30, step=0.5)
        self.facts["kill_scheduler"] = {"pid": pid, "in_flight_op": op.op_id if op else None,
                                        "first_job_status": str(self.client.get_job_status(first_job))}
        self.submit(f"--duration {max(remaining, 10):.0f}s")

    def cut_region(self) -> None:
        from parsec.cluster.deploy import cut_off_regions

        started = time.time()
        peers = cut_off_regions(self.testbed, self.actors, [self.args.cut])
        say(f"fault: region {self.args.cut} cut off ({peers} testbed peers) for {self.args.cut_for:g}s")
        try:
            time.sleep(self.args.cut_for)
        finally:
            cut_off_regions(self.testbed, self.actors, [])
        say(f"region {self.args.cut} restored")
        self.facts["cut_region"] = {"region": self.args.cut, "testbed_peers": peers, "from": started, "to": time.time()}


def summarize_faults(chaos: Chaos, database) -> None:
    """What Postgres says each fault left: error rows, not gaps."""
    from parsec.store.journal import SCHEDULER_KILLED

    facts = chaos.facts
    results = ("SELECT m.op_id, m.kind, t.node_id, t.error, t.created_at, t.duration, x.detail FROM measurements m"
               " JOIN (SELECT 'provide' AS kind, id, node_id, error, created_at, duration FROM provides_ecs UNION ALL"
               " SELECT 'retrieval', id, node_id, error, created_at, duration FROM retrievals_ecs) t"
               " ON t.kind = m.kind AND t.id = m.row_id LEFT JOIN traces x ON x.op_id = m.op_id")
    if "op_id" in facts.get("kill_server", {}):
        killed = facts["kill_server"]
        row = fetch(database, results + " WHERE m.op_id = $1::uuid", killed["op_id"])
        killed["recorded_error"] = row[0]["error"] if row else "MISSING"
        nodes = fetch(database, "SELECT id, cmd, offline_since FROM nodes_ecs ORDER BY id")
        cmd = next((n["cmd"] for n in nodes if n["id"] == killed["node_id"]), None)
        killed["old_row_offline"] = any(n["id"] == killed["node_id"] and n["offline_since"] for n in nodes)
        killed["new_rows_same_actor"] = [n["id"] for n in nodes if n["cmd"] == cmd and n["id"] != killed["node_id"]]
    if "kill_scheduler" in facts:
        facts["kill_scheduler"]["recorded_as_killed"] = len(fetch(database, results + " WHERE t.error = $1",
                                                                  SCHEDULER_KILLED))
    if "cut_region" in facts:
        cut = facts["cut_region"]
        nodes = [n["id"] for n in fetch(database, "SELECT id FROM nodes_ecs WHERE region = $1", cut["region"])]
        # operations of servers in the cut region that ran entirely inside the cut
        rows = [r for r in fetch(database, results + " WHERE t.node_id = ANY($1::int[])", nodes)
                if cut["from"] <= r["created_at"].timestamp() - r["duration"] and r["created_at"].timestamp() <= cut["to"]]
        cut["operations_of_cut_servers"] = len(rows)
        cut["with_error"] = sum(1 for r in rows if r["error"])
        cut["errors"] = sorted({(r["error"] or "")[:70] for r in rows if r["error"]})
        # a retrieval can succeed without the network: the record was stored on the server itself earlier
        cut["succeeded_from_own_store"] = sum(1 for r in rows if not r["error"] and (r["detail"] or {}).get("local"))
        del cut["from"], cut["to"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=60)
    parser.add_argument("--regions", default="eu-central-1,eu-central-1,us-east-2,ap-south-1",
                        help="one server per entry (default 4 servers in 3 regions)")
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of campaign after the first operation")
    parser.add_argument("--kill-server-at", type=float, default=20)
    parser.add_argument("--stop-db-at", type=float, default=50)
    parser.add_argument("--db-down", type=float, default=15)
    parser.add_argument("--kill-scheduler-at", type=float, default=90)
    parser.add_argument("--cut-at", type=float, default=120)
    parser.add_argument("--cut", default="ap-south-1")
    parser.add_argument("--cut-for", type=float, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results-chaos.json")
    args = parser.parse_args()

    import ray

    from parsec.config import NetworkSettings, ServerSettings, TestbedSettings
    from ray.job_submission import JobSubmissionClient

    from parsec.cluster.connect import job_client, start_ray
    from parsec.cluster.deploy import deploy_server, start_testbed, stop_servers, wait_ready
    from parsec.scheduler.audit import audit
    from parsec.scheduler.sinks import journal_path
    from parsec.server.actor import ServerActorConfig
    from parsec.store.embedded import EmbeddedPostgres
    from parsec.store.journal import read_issued

    work = Path(tempfile.mkdtemp(prefix="parsec-chaos-"))
    os.chmod(work, 0o755)  # the postgres OS user must reach its data dir
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        address, dashboard = cleanup.enter_context(ray_head(work))
        postgres = EmbeddedPostgres(work / "pg")
        database = postgres.start()
        cleanup.callback(postgres.stop)
        say(f"Postgres {database.redacted()}; Ray {address}")
        context = start_ray(address)
        cleanup.callback(ray.shutdown)
        network = NetworkSettings(network="testbed", latency_matrix="default")
        testbed = start_testbed(TestbedSettings(peers=args.peers, processes=2, unreachable=0, churn_session=0),
                                network.protocol_id, name="chaos", progress=say, latency=network.latency_model())
        cleanup.callback(testbed.stop)
        actors = [deploy_server(ServerActorConfig(
            name=f"chaos-{i}", network=network, database=database, bootstrap=testbed.bootstrap_addrs(),
            server=ServerSettings(server_port=0, peer_port=0, heartbeat_interval=5, rpc_timeout=3, region=region)))
            for i, region in enumerate(regions)]
        cleanup.callback(stop_servers, actors)
        wait_ready(actors, timeout=180, progress=say)
        client = JobSubmissionClient(dashboard) if dashboard else job_client(context, address)
        journal = journal_path(work / "spool", ["default"], database.redacted())
        parquet = work / "parquet"
        chaos = Chaos(args, database, postgres, testbed, actors, client, journal, parquet)
        cleanup.callback(lambda: [client.stop_job(job) for job in chaos.jobs if not job_ended(client, job)])

        first = chaos.submit()
        if not wait_for(lambda: read_issued(journal), 120, step=0.2):
            raise RuntimeError(f"the scheduler issued nothing in 120 s:\n{client.get_job_logs(first)[-3000:]}")
        t0 = time.monotonic()
        say("first operation issued: the schedule starts")
        schedule = sorted([(args.kill_server_at, "kill_server"), (args.stop_db_at, "stop_database"),
                           (args.kill_scheduler_at, "kill_scheduler"), (args.cut_at, "cut_region")])
        for at, step in schedule:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if step == "kill_scheduler":
                chaos.kill_scheduler(first, args.duration - (time.monotonic() - t0))
            else:
                getattr(chaos, step)()
        last = chaos.jobs[-1]
        if not wait_for(lambda: job_ended(client, last), args.duration + 120, step=1.0):
            raise RuntimeError("the resubmitted scheduler did not end")
        say(f"scheduler job {last} ended: {client.get_job_status(last)}")
        logs = "".join(client.get_job_logs(job) for job in chaos.jobs)

        result = asyncio.run(audit(database, journal, parquet))
        summarize_faults(chaos, database)
        doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "campaign_s": round(time.monotonic() - t0, 1), "audit": result.as_dict(), "faults": chaos.facts,
               "replayed": [line for line in logs.splitlines() if "replayed the spool" in line],
               "spool_messages": [line for line in logs.splitlines() if "Postgres" in line and "scheduler:" in line]}
        print()
        print(f"operations issued     {result.issued}")
        print(f"rows in Postgres      {result.postgres_rows}")
        print(f"rows in Parquet       {result.parquet_rows}")
        print(f"duplicates            {result.duplicates}  (Postgres {result.duplicates_postgres}, "
              f"Parquet {result.duplicates_parquet})")
        print(f"lost                  {result.lost}  (Postgres {result.lost_postgres}, Parquet {result.lost_parquet})")
        print(f"rows never issued     {result.unaccounted}")
        print(f"errors recorded       {sum(result.errors.values())}: "
              + "; ".join(f"{n}× {text}" for text, n in result.errors.items()))
        print(json.dumps(chaos.facts, indent=2, default=str))
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"written to {args.json}")
        return 0 if result.lost == 0 and result.duplicates == 0 and result.unaccounted == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
