"""Faults on the local cluster cost no measurement: each fault of issue 7 on real parts.

A 60-peer testbed with emulated WAN latency (every answer 0.3 s late, so operations last
long enough to be hit mid-way), three server actors in three regions, and a PostgreSQL of
this module's own (it is stopped and restarted). The scheduler journals every operation
(``PARSEC_SCHEDULER_SPOOL_ARCHIVE``), so each test checks with ``parsec.scheduler.audit``
that every operation issued is in Postgres and in Parquet exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from parsec.config import DatabaseSettings, NetworkSettings, SchedulerSettings, ServerSettings, TestbedSettings
from parsec.scheduler.audit import audit
from parsec.scheduler.sinks import journal_path
from parsec.store.journal import SCHEDULER_KILLED, read_in_flight, read_issued

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("eu-central-1", "us-east-2", "ap-south-1")
CUT = "ap-south-1"


@dataclass
class Fleet:
    postgres: object  # EmbeddedPostgres: pause() / resume()
    database: DatabaseSettings
    testbed: object
    actors: list


@pytest.fixture(scope="module")
def fleet(ray_context):
    from parsec.cluster.deploy import deploy_server, start_testbed, stop_servers, wait_ready
    from parsec.server.actor import ServerActorConfig
    from parsec.store.embedded import EmbeddedPostgres

    tag = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="parsec-faults-pg-"))  # /tmp: reachable by the postgres user
    postgres = EmbeddedPostgres(data_dir)
    database = postgres.start()
    network = NetworkSettings(network="testbed", latency_matrix="default")
    testbed = start_testbed(TestbedSettings(peers=60, processes=2, unreachable=0, churn_session=0, slow_fraction=1.0,
                                            slow_delay=0.3), network.protocol_id, name=f"f-{tag}",
                            progress=lambda _: None, latency=network.latency_model())
    actors = [deploy_server(ServerActorConfig(
        name=f"f-{tag}-{i}", network=network, database=database, bootstrap=testbed.bootstrap_addrs(),
        server=ServerSettings(server_port=0, peer_port=0, heartbeat_interval=2, rpc_timeout=2, region=region)))
        for i, region in enumerate(REGIONS)]
    try:
        wait_ready(actors, timeout=180, progress=lambda _: None)
        yield Fleet(postgres, database, testbed, actors)
    finally:
        stop_servers(actors)
        testbed.stop()
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _settings(tmp_path: Path, **given) -> SchedulerSettings:
    values = dict(fleets=["default"], interval=0, http_timeout=60, readiness_timeout=3, parquet_dir=tmp_path / "parquet",
                  spool_dir=tmp_path / "spool", spool_archive=True, spool_retry=0.5)
    return SchedulerSettings(**{**values, **given})


def _journal(settings: SchedulerSettings, database: DatabaseSettings) -> Path:
    return journal_path(settings.spool_dir, settings.fleets, database.redacted())


class SchedulerThread:
    """``run_loops`` of one scheduler in a thread of the test process."""

    def __init__(self, settings: SchedulerSettings, database: DatabaseSettings) -> None:
        from parsec.scheduler import job

        self.result = None
        self.error: BaseException | None = None

        def body() -> None:
            try:
                self.result = asyncio.run(job.run_loops([settings], database))
            except BaseException as error:  # reported by join()
                self.error = error

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 180) -> list:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "scheduler still running"
        if self.error is not None:
            raise self.error
        return self.result[0]


def _wait(condition, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def _fetch(database: DatabaseSettings, sql: str, *args) -> list[dict]:
    from parsec.store.db import fetch_rows

    return fetch_rows(database, sql, *args)


def _assert_exactly_once(settings: SchedulerSettings, database: DatabaseSettings):
    result = asyncio.run(audit(database, _journal(settings, database), settings.parquet_dir))
    assert result.issued > 0
    assert (result.lost_postgres, result.lost_parquet, result.duplicates, result.unaccounted) == (0, 0, 0, 0), result
    assert result.postgres_rows == result.parquet_rows == result.issued
    return result


def _node_actors(fleet: Fleet) -> dict[int, object]:
    import ray

    statuses = ray.get([actor.status.remote() for actor in fleet.actors])
    return {status["node_id"]: actor for status, actor in zip(statuses, fleet.actors)}


def test_a_heartbeat_does_not_undo_an_offline_mark_a_ready_node_registers_again(fleet):
    """The scheduler's offline mark stays; the node, still ready, comes back as a new row."""
    import ray

    actor = fleet.actors[0]
    old = ray.get(actor.status.remote())["node_id"]
    _fetch(fleet.database, "UPDATE nodes_ecs SET offline_since = now() WHERE id = $1 RETURNING id", old)
    new = _wait(lambda: (ray.get(actor.status.remote())["node_id"] != old) and ray.get(actor.status.remote())["node_id"],
                20, "a new registration")
    rows = {row["id"]: row for row in _fetch(fleet.database, "SELECT * FROM nodes_ecs WHERE id = ANY($1::int[])",
                                             [old, new])}
    assert rows[old]["offline_since"] is not None  # not silently re-admitted
    assert rows[new]["offline_since"] is None and rows[new]["cmd"] == rows[old]["cmd"]
    _wait(lambda: _fetch(fleet.database, "SELECT last_heartbeat FROM nodes_ecs WHERE id = $1", new)[0]["last_heartbeat"],
          20, "the new row's heartbeat")


def test_region_cut_off_operations_time_out_and_are_recorded_with_their_error(fleet, tmp_path):
    import ray

    from parsec.cluster.deploy import cut_off_regions

    statuses = ray.get([actor.status.remote() for actor in fleet.actors])
    cut_node = next(s["node_id"] for s in statuses if s["region"] == CUT)
    during = _settings(tmp_path / "cut", rounds=3)
    assert cut_off_regions(fleet.testbed, fleet.actors, [CUT]) > 0  # some testbed peers live there
    try:
        SchedulerThread(during, fleet.database).join()
    finally:
        cut_off_regions(fleet.testbed, fleet.actors, [])
    after = _settings(tmp_path / "after", rounds=3)
    SchedulerThread(after, fleet.database).join()

    cut = _assert_exactly_once(during, fleet.database)
    rows = _fetch(fleet.database, "SELECT 'provide' AS kind, node_id, error FROM provides_ecs WHERE scheduler_id = ANY($1)"
                                  " UNION ALL SELECT 'retrieval', node_id, error FROM retrievals_ecs"
                                  " WHERE scheduler_id = ANY($1)", cut.schedulers)
    mine = [row for row in rows if row["node_id"] == cut_node]
    assert mine and all(row["error"] for row in mine), mine  # every operation of the cut-off server failed
    assert any(row["kind"] == "provide" and "no ADD_PROVIDER succeeded" in row["error"] for row in mine), mine
    assert all("no peer answered" in row["error"] for row in mine if row["kind"] == "retrieval"), mine
    restored = _assert_exactly_once(after, fleet.database)
    rows = _fetch(fleet.database, "SELECT error FROM provides_ecs WHERE scheduler_id = ANY($1) AND node_id = $2",
                  restored.schedulers, cut_node)
    assert rows and all(row["error"] is None for row in rows)  # restored: it provides again


def test_postgres_stopped_and_restarted_mid_run_loses_nothing(fleet, tmp_path, capsys):
    settings = _settings(tmp_path, rounds=8, interval=0.5)
    journal = _journal(settings, fleet.database)
    scheduler = SchedulerThread(settings, fleet.database)
    _wait(lambda: len(read_issued(journal)) >= 3, 60, "the first operations")
    paused_at = time.time()
    fleet.postgres.pause()
    try:
        _wait(lambda: sum(i.issued_at.timestamp() > paused_at + 0.5 for i in read_issued(journal).values()) >= 3,
              60, "operations measured while Postgres is down")
    finally:
        resumed_at = time.time()
        fleet.postgres.resume()
    reports = scheduler.join()
    assert len(reports) == 8
    result = _assert_exactly_once(settings, fleet.database)
    during = [i for i in read_issued(journal).values() if paused_at < i.issued_at.timestamp() < resumed_at]
    assert len(during) >= 3
    out = capsys.readouterr().out
    assert "Postgres unreachable" in out and "Postgres is back" in out
    assert journal.read_text() == ""  # every record reached both sinks: nothing left spooled
    assert result.errors == {} or all(not text.startswith("scheduler") for text in result.errors)


def test_scheduler_sigkilled_and_resubmitted_continues_and_records_what_was_in_flight(fleet, ray_context, tmp_path):
    from ray.job_submission import JobStatus

    from parsec.cluster.connect import job_client

    settings = _settings(tmp_path)
    journal = _journal(settings, fleet.database)
    client = job_client(ray_context, None)
    env = {f"PARSEC_DATABASE_{k.upper()}": str(v) for k, v in fleet.database.model_dump().items()}
    env.update(PARSEC_SCHEDULER_SPOOL_DIR=str(settings.spool_dir), PARSEC_SCHEDULER_SPOOL_ARCHIVE="true",
               PARSEC_SCHEDULER_SPOOL_RETRY="0.5")
    command = f"{sys.executable} {REPO / 'jobs' / 'scheduler.py'} --interval 0.3s --parquet-dir {settings.parquet_dir}"
    before = {row["id"] for row in _fetch(fleet.database, "SELECT id FROM schedulers_ecs")}

    first = client.submit_job(entrypoint=command, runtime_env={"env_vars": env})
    _wait(lambda: len(read_issued(journal)) >= 4 and read_in_flight(journal), 120, "operations in flight", step=0.02)
    row = _fetch(fleet.database, "SELECT id, dependencies FROM schedulers_ecs WHERE NOT id = ANY($1::int[])",
                 list(before))[0]
    deps = row["dependencies"] if isinstance(row["dependencies"], dict) else json.loads(row["dependencies"])
    pid = int(deps["pid"])
    assert "scheduler.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    in_flight = {intent.op_id for intent in read_in_flight(journal)}
    issued_before_kill = set(read_issued(journal))
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: client.get_job_status(first) in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUCCEEDED), 60,
          "the killed job to end", step=0.5)

    second = client.submit_job(entrypoint=f"{command} --rounds 2", runtime_env={"env_vars": env})
    status = _wait(lambda: (s := client.get_job_status(second)) in (JobStatus.FAILED, JobStatus.STOPPED,
                                                                     JobStatus.SUCCEEDED) and s, 120,
                   "the resubmitted job", step=0.5)
    logs = client.get_job_logs(second)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "replayed the spool" in logs and "scheduler finished: 2 round(s)" in logs

    result = _assert_exactly_once(settings, fleet.database)
    schedulers = _fetch(fleet.database, "SELECT id FROM schedulers_ecs WHERE NOT id = ANY($1::int[]) ORDER BY id",
                        list(before))
    assert len(schedulers) == 2  # the resubmitted job is a new scheduler
    assert set(result.schedulers) == {row["id"] for row in schedulers}
    killed = _fetch(fleet.database, "SELECT m.op_id, m.scheduler_id FROM measurements m JOIN ("
                                    " SELECT 'provide' AS kind, id, error FROM provides_ecs UNION ALL"
                                    " SELECT 'retrieval', id, error FROM retrievals_ecs) t"
                                    " ON t.kind = m.kind AND t.id = m.row_id WHERE t.error = $1", SCHEDULER_KILLED)
    killed_ids = {row["op_id"].hex for row in killed}
    # what was in flight when we looked (or issued in the instant before the kill landed)
    assert killed_ids and killed_ids <= in_flight | (set(read_issued(journal)) - issued_before_kill)
    assert {row["scheduler_id"] for row in killed} == {schedulers[0]["id"]}  # recorded under the killed scheduler


def test_server_killed_mid_operation_is_an_error_row_and_restarts_as_a_new_row(fleet, tmp_path):
    import ray

    from parsec.cluster.deploy import wait_ready

    by_node = _node_actors(fleet)
    # the crash is a SIGKILL of the actor's process, sent the moment an operation is seen in
    # flight (ray.kill takes a detour through Ray's control plane: on a loaded machine a fast
    # retrieval could finish first)
    pids = {node_id: ray.get(actor.status.remote())["pid"] for node_id, actor in by_node.items()}
    cmds = {row["id"]: row["cmd"] for row in _fetch(fleet.database, "SELECT id, cmd FROM nodes_ecs")}
    settings = _settings(tmp_path, rounds=2)  # round 1: the provider dies; round 2: a retriever
    journal = _journal(settings, fleet.database)
    scheduler = SchedulerThread(settings, fleet.database)
    killed = {}
    for kind in ("provide", "retrieval"):  # one server dies mid-provide, another mid-retrieve
        op = _wait(lambda: next((i for i in read_in_flight(journal) if i.kind == kind and i.node_id in by_node
                                 and i.node_id not in killed.values()), None), 90, f"a {kind} in flight", step=0.01)
        os.kill(pids[op.node_id], signal.SIGKILL)  # a crash: Ray restarts the actor
        killed[op.op_id] = op.node_id
    scheduler.join()
    _assert_exactly_once(settings, fleet.database)
    errors = {row["op_id"].hex: row["error"] for row in _fetch(
        fleet.database, "SELECT m.op_id, t.error FROM measurements m JOIN (SELECT 'provide' AS kind, id, error"
                        " FROM provides_ecs UNION ALL SELECT 'retrieval', id, error FROM retrievals_ecs) t"
                        " ON t.kind = m.kind AND t.id = m.row_id WHERE m.op_id = ANY($1::uuid[])", list(killed))}
    assert set(errors) == set(killed), errors  # data, not gaps
    assert all("scheduler HTTP error" in (error or "") for error in errors.values()), errors  # the crash

    restarted = [by_node[node_id] for node_id in killed.values()]
    statuses = wait_ready(restarted, timeout=120, progress=lambda _: None)
    rows = {row["id"]: row for row in _fetch(fleet.database, "SELECT * FROM nodes_ecs")}
    for old, status in zip(killed.values(), statuses):
        assert status["node_id"] != old  # a new incarnation, a new row
        assert rows[old]["offline_since"] is not None
        assert rows[status["node_id"]]["cmd"] == cmds[old] and rows[status["node_id"]]["offline_since"] is None
    # no round followed the second kill: its old row was marked by the new incarnation itself
    retriever_old, retriever_new = list(killed.values())[1], statuses[1]["node_id"]
    assert rows[retriever_old]["offline_since"] >= rows[retriever_new]["created_at"] - timedelta(seconds=1)
