"""The whole loop on real parts: `ray job submit` a scheduler against server actors.

Postgres rows and Parquet rows must agree one to one; values must be plausible.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from parsec.store.db import fetch_rows as _fetch
from parsec.store.parquet import read_dataset
from tests.integration.conftest import CAMPAIGN_TOKEN

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 3


def _dashboard(ray_context) -> str:
    url = os.environ.get("PARSEC_TEST_RAY_DASHBOARD") or ray_context.dashboard_url
    return url if url.startswith("http") else f"http://{url}"


async def _rows(database, kind):
    from parsec.store.db import Repository, connect_pool

    pool = await connect_pool(database)
    try:
        return await Repository(pool).fetch_results(kind)
    finally:
        await pool.close()




@pytest.fixture(scope="module")
def job_run(campaign, ray_context, tmp_path_factory):
    parquet = tmp_path_factory.mktemp("parquet")
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in campaign.database.model_dump().items()}
    env["PARSEC_SERVER_AUTH_TOKEN"] = CAMPAIGN_TOKEN  # the scheduler sends what the servers require
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", _dashboard(ray_context),
        "--runtime-env-json", json.dumps({"env_vars": env}), "--",
        sys.executable, str(REPO / "jobs" / "scheduler.py"), "--rounds", str(ROUNDS), "--interval", "0.5s",
        "--parquet-dir", str(parquet),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    return result, parquet


def test_scheduler_job_measures_the_fleet(job_run):
    result, _ = job_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"scheduler finished: {ROUNDS} round(s)" in result.stdout


def test_postgres_rows_are_plausible(campaign, job_run):
    provides = asyncio.run(_rows(campaign.database, "provide"))
    retrievals = asyncio.run(_rows(campaign.database, "retrieval"))
    assert len(provides) == ROUNDS
    assert len(retrievals) == ROUNDS * (len(campaign.actors) - 1)
    assert len({row["node_id"] for row in provides}) == ROUNDS  # round-robin over 3 nodes
    for row in provides + retrievals:
        assert row["duration"] > 0 and row["rt_size"] > 0
        assert row["cid"].startswith("Qm")
    assert all(row["error"] is None for row in provides)
    assert sum(row["error"] is None for row in retrievals) == len(retrievals)
    assert {row["step"] for row in provides} == {"provide"}
    schedulers = _fetch(campaign.database, "SELECT fleets FROM schedulers_ecs")
    assert schedulers == [{"fleets": ["default"]}]
    traces = _fetch(campaign.database, "SELECT m.kind, t.rpc_total, t.hops, t.strategy, t.detail FROM traces t"
                                       " JOIN measurements m USING (op_id)")
    assert len(traces) == len(provides) + len(retrievals)  # every measurement carried its trace
    for t in traces:
        rpcs = t["detail"]["rpcs"]
        assert t["rpc_total"] == sum(rpcs.values()), t
        if t["kind"] == "provide":  # classic: a lookup of the 20 closest of the 62 others, then a store on each
            assert rpcs["ADD_PROVIDER"] == 20 and rpcs["FIND_NODE"] >= 20 and t["strategy"] == "classic", t
        elif t["detail"].get("local"):  # the retriever held the record: its own store answered
            assert t["rpc_total"] == 0, t
        else:  # a walk that asked the network
            assert rpcs["GET_PROVIDERS"] == t["rpc_total"] >= 1 and t["hops"] >= 1, t


def test_parquet_agrees_with_postgres_one_to_one(campaign, job_run):
    _, parquet = job_run
    frame = read_dataset(parquet)
    db = {}
    for kind in ("provide", "retrieval"):
        for row in asyncio.run(_rows(campaign.database, kind)):
            db[row["op_id"]] = (kind, row["node_id"], row["cid"], round(row["duration"], 9), row["error"])
    files = {
        row.op_id: (row.kind, row.node_id, row.cid, round(row.duration, 9), None if pd.isna(row.error) else row.error)
        for row in frame.itertuples()
    }
    assert len(frame) == len(files) == len(db) == ROUNDS * len(campaign.actors)
    assert files == db
    # a provide's trace: ≥ 20 FIND_NODE (the lookup of the 20 closest) and 20 ADD_PROVIDER
    assert frame["trace"].notna().all() and (frame.loc[frame.kind == "provide", "trace_rpc_total"] >= 40).all()


def test_servers_registered_with_heartbeats(campaign, job_run):
    nodes = _fetch(campaign.database, "SELECT * FROM nodes_ecs ORDER BY id")
    assert len(nodes) == len(campaign.actors)
    for node in nodes:
        assert node["fleet"] == "default" and node["last_heartbeat"] is not None
        assert str(node["ip_address"]) == "127.0.0.1" and node["offline_since"] is None
        deps = node["dependencies"] if isinstance(node["dependencies"], dict) else json.loads(node["dependencies"])
        assert deps["libp2p"] == "py-libp2p" and deps["libp2p_version"] == "0.8.1"
    assert {n["peer_id"] for n in nodes} == {s["peer_id"] for s in campaign.statuses}


def test_ports_asked_as_0_fit_the_originals_smallint(campaign):
    """Servers started with port 0 registered ports a Go scheduler can read: 20000-32767
    (parsec.net.ports), the ones they really listen on."""
    nodes = _fetch(campaign.database, "SELECT peer_id, server_port, peer_port FROM nodes_ecs")
    by_peer = {s["peer_id"]: s for s in campaign.statuses}
    for node in nodes:
        assert 20000 <= node["server_port"] <= 32767 and 20000 <= node["peer_port"] <= 32767, node
        assert node["server_port"] == by_peer[node["peer_id"]]["http_port"]
        assert node["peer_port"] == by_peer[node["peer_id"]]["peer_port"]


BAD_REQUESTS = [
    ("POST", "/provide", b"{not json", 400),
    ("POST", "/provide", b'{"Content": "***not base64***"}', 400),
    ("POST", "/provide", b'{"Other": 1}', 400),
    ("POST", "/provide", json.dumps({"Content": base64.b64encode(b"x" * (2 << 20)).decode()}).encode(), 413),
    ("POST", "/retrieve/not-a-cid", b"{}", 400),
    ("GET", "/provide", b"", 405),
    ("DELETE", "/readiness", b"", 405),
]


@pytest.mark.parametrize("method,path,body,status", BAD_REQUESTS)
def test_bad_input_answered_with_json_4xx_by_a_real_server(campaign, method, path, body, status):
    server = campaign.statuses[0]
    base = f"http://127.0.0.1:{server['http_port']}"
    response = httpx.request(method, base + path, content=body, timeout=30,
                             headers={"content-type": "application/json", "authorization": f"Bearer {CAMPAIGN_TOKEN}"})
    assert response.status_code == status
    assert "error" in response.json()
    assert httpx.get(base + "/readiness", timeout=10).status_code == 200  # the actor lives on


def test_a_real_server_refuses_strangers_and_listens_on_loopback_only(campaign):
    server = campaign.statuses[0]
    assert server["http_host"] == "127.0.0.1"
    base = f"http://127.0.0.1:{server['http_port']}"
    cid = "QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp"
    for path, body in (("/provide", {"Content": base64.b64encode(b"x").decode()}), (f"/retrieve/{cid}", {})):
        assert httpx.post(base + path, json=body, timeout=30).status_code == 401
        wrong = httpx.post(base + path, json=body, timeout=30, headers={"authorization": "Bearer " + "w" * 30})
        assert wrong.status_code == 401


def test_secrets_never_reach_the_logs(campaign, job_run, ray_context):
    """Neither the bearer token nor the database password appears in what the scheduler job
    printed or in any log our Ray workers (servers, testbed) wrote."""
    result, _ = job_run
    secrets = [CAMPAIGN_TOKEN, campaign.database.password]
    logs = Path(ray_context.address_info["session_dir"]) / "logs"
    texts = {"job output": result.stdout + result.stderr}
    for path in [*logs.glob("worker-*"), *logs.glob("job-driver-*")]:
        texts[path.name] = path.read_text(errors="replace")
    assert len(texts) > 1
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in {name}"


def test_graceful_stop_marks_node_offline(campaign, job_run):
    import ray

    from parsec.cluster.deploy import stop_servers

    last = campaign.actors[-1]
    peer_id = ray.get(last.status.remote())["peer_id"]
    stop_servers([last])
    campaign.actors.remove(last)
    rows = _fetch(campaign.database, f"SELECT offline_since FROM nodes_ecs WHERE peer_id = '{peer_id}'")
    assert rows and rows[0]["offline_since"] is not None
