"""A fleet across a multi-node Ray cluster, driven only by `ray job submit`.

Three Ray nodes on this machine (head + two workers, each its own loopback address, CPU
and memory, and region resource) started by scripts/ray-node.sh as cluster.yaml does;
a 30-peer testbed (on the suite's own Ray head) stands in for the public DHT. The fleet is
deployed in production mode (``--network amino`` with the bootstrap list pointed at the
loopback testbed: amino's protocol, no testbed file, no latency emulation), lands one
server per region, survives a redeploy unchanged, is measured by a scheduler job, keeps
its records when a job is stopped mid-run, and is torn down with every node offline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from parsec.config import NetworkSettings, TestbedSettings
from tests.conftest import scratch_database
from tests.integration.multinode import REPO, LocalCluster, NodeSpec

pytestmark = pytest.mark.integration

NODES = [NodeSpec("127.0.0.11", "eu-central-1", 2, 2048), NodeSpec("127.0.0.12", "us-west-1", 1, 1536),
         NodeSpec("127.0.0.13", "ap-south-1", 3, 1024)]
REGIONS = ",".join(node.region for node in NODES)
ROUNDS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster(NODES)
    try:
        local.start(tmp_path_factory.mktemp("ray-nodes"))
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def database(pg):
    with scratch_database(pg) as settings:
        yield settings


@pytest.fixture(scope="module")
def testbed(ray_context):
    from parsec.cluster.deploy import start_testbed

    handle = start_testbed(TestbedSettings(peers=30, processes=1, unreachable=0, churn_session=0), NetworkSettings(network="amino").protocol_id,
                           name=f"mn-{uuid.uuid4().hex[:6]}", progress=lambda _: None)
    yield handle
    handle.stop()


def submit(cluster, database, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`ray job submit` to the multi-node cluster; waits for the job and returns its output."""
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in database.model_dump().items()}
    command = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.dashboard,
               "--runtime-env-json", json.dumps({"env_vars": env}), "--", sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=cluster.env(cluster.nodes[0]))


def deploy_args(testbed) -> list[str]:
    return [str(REPO / "jobs" / "deploy_fleet.py"), "--fleet", "default", "--regions", REGIONS,
            "--servers-per-region", "1", "--network", "amino", "--bootstrap", ",".join(testbed.bootstrap_addrs()),
            "--bootstrap-file", "/nonexistent/testbed/bootstrap.txt", "--heartbeat-interval", "5s",
            "--ready-timeout", "120"]


def query(database, sql: str) -> list[dict]:
    from parsec.store.db import connect_pool

    async def run():
        pool = await connect_pool(database)
        try:
            return [dict(row) for row in await pool.fetch(sql)]
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def deployed(cluster, database, testbed):
    started = time.monotonic()
    result = submit(cluster, database, *deploy_args(testbed))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    print(f"\ndeploy took {time.monotonic() - started:.1f}s\n{result.stdout[-2500:]}")
    return result


def test_fleet_lands_one_server_per_region_on_its_node(deployed, database):
    assert "3 created, 0 kept, 0 replaced, 0 removed" in deployed.stdout
    nodes = query(database, "SELECT region, host(ip_address) AS ip, cpu, memory, fleet, cmd, last_heartbeat"
                            " FROM nodes_ecs ORDER BY region")
    expected = sorted((n.region, n.ip, n.cpus, n.memory_mb) for n in NODES)
    assert [(n["region"], n["ip"], n["cpu"], n["memory"]) for n in nodes] == expected
    assert all(n["fleet"] == "default" and n["last_heartbeat"] is not None for n in nodes)


def test_redeploy_converges_without_duplicates(deployed, cluster, database, testbed):
    again = submit(cluster, database, *deploy_args(testbed))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "0 created, 3 kept, 0 replaced, 0 removed" in again.stdout
    assert query(database, "SELECT count(*) AS n FROM nodes_ecs")[0]["n"] == 3


def test_bad_region_is_one_clear_line(deployed, cluster, database, testbed):
    args = deploy_args(testbed)
    args[args.index(REGIONS)] = "sa-east-1"
    result = submit(cluster, database, *args[:-2], "--ready-timeout", "5")
    assert result.returncode != 0
    assert "no Ray node offers region:sa-east-1" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout


def test_fleet_status_lists_ready_servers_by_region(deployed, database):
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in database.model_dump().items()}
    result = subprocess.run([sys.executable, "-m", "parsec.cli", "fleet", "status"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    assert "fleet default: 3 server(s), 3 ready, regions ap-south-1, eu-central-1, us-west-1" in result.stdout
    assert result.stdout.count(" ready ") == 3


@pytest.fixture(scope="module")
def scheduled(deployed, cluster, database, tmp_path_factory):
    parquet = tmp_path_factory.mktemp("mn-parquet")
    result = submit(cluster, database, str(REPO / "jobs" / "scheduler.py"), "--fleets", "default",
                    "--rounds", str(ROUNDS), "--interval", "0.5s", "--parquet-dir", str(parquet))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_scheduler_job_measures_the_fleet_across_nodes(scheduled, database):
    assert f"scheduler finished: {ROUNDS} round(s)" in scheduled.stdout
    provides = query(database, "SELECT p.node_id, p.error, p.duration, n.region FROM provides_ecs p"
                               " JOIN nodes_ecs n ON n.id = p.node_id ORDER BY p.id")
    retrievals = query(database, "SELECT r.error, r.duration, n.region FROM retrievals_ecs r"
                                 " JOIN nodes_ecs n ON n.id = r.node_id")
    assert len(provides) == ROUNDS and {p["region"] for p in provides} == {n.region for n in NODES}
    assert all(p["error"] is None and p["duration"] > 0 for p in provides)
    assert len(retrievals) == ROUNDS * 2 and all(r["error"] is None for r in retrievals)


def test_job_stop_ends_an_unbounded_scheduler_cleanly(scheduled, cluster, database):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard)
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in database.model_dump().items()}
    job_id = client.submit_job(entrypoint=f"{sys.executable} {REPO / 'jobs' / 'scheduler.py'} --fleets default "
                                          "--interval 0.2s --no-parquet", runtime_env={"env_vars": env})
    deadline = time.monotonic() + 90
    while "round 2:" not in client.get_job_logs(job_id):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-2000:]
        assert client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING), client.get_job_logs(job_id)
        time.sleep(0.5)
    client.stop_job(job_id)
    while client.get_job_status(job_id) not in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.STOPPED
    assert "SIGTERM received" in logs and "scheduler finished:" in logs, logs[-2000:]  # exited before SIGKILL
    scheduler_id = int(re.search(r"^scheduler (\d+): fleets", logs, re.M).group(1))
    rows = query(database, f"SELECT error FROM provides_ecs WHERE scheduler_id = {scheduler_id}"
                           f" UNION ALL SELECT error FROM retrievals_ecs WHERE scheduler_id = {scheduler_id}")
    assert len(rows) >= 2 * 3  # two full rounds at least, each operation recorded
    assert all(r["error"] is None or r["error"].startswith("cancelled") for r in rows)


def test_teardown_marks_every_node_offline(scheduled, cluster, database):
    result = submit(cluster, database, str(REPO / "jobs" / "teardown.py"), "--fleet", "default")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    print(f"\n{result.stdout[-2000:]}")
    assert "3 server(s) stopped and marked offline" in result.stdout
    nodes = query(database, "SELECT offline_since FROM nodes_ecs")
    assert len(nodes) == 3 and all(n["offline_since"] is not None for n in nodes)
    again = submit(cluster, database, str(REPO / "jobs" / "teardown.py"), "--fleet", "default")
    assert again.returncode == 0 and "no servers running" in again.stdout
