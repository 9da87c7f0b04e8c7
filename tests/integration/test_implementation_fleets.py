"""Fleets `go` and `js`: parsec servers whose DHT work is done by a go-libp2p-kad-dht or
js-libp2p peer; one cross-fleet scheduler checks content published by one implementation
is found by the others."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from parsec.config import NetworkSettings, SchedulerSettings, ServerSettings, TestbedSettings
from parsec.net.external import GO_BINARY, JS_DIR
from tests.conftest import scratch_database

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not GO_BINARY.exists() or not (JS_DIR / "node_modules").is_dir(),
                       reason="Go/Node testbed programs not built (scripts/build-go.sh, scripts/build-js.sh)"),
]
FLEETS = ["default", "go", "js"]


@pytest.fixture(scope="module")
def fleet_of_implementations(ray_context, pg):
    from parsec.cluster.deploy import deploy_server, start_testbed, stop_servers, wait_ready
    from parsec.server.actor import ServerActorConfig

    tag = uuid.uuid4().hex[:8]
    network = NetworkSettings(network="testbed")
    with scratch_database(pg) as database:
        testbed = start_testbed(TestbedSettings(peers=50, processes=1, unreachable=0, churn_session=0), network.protocol_id, name=f"impl-{tag}",
                                progress=lambda _: None)
        actors = [deploy_server(ServerActorConfig(
            name=f"impl-{tag}-{fleet}", network=network, database=database, bootstrap=testbed.bootstrap_addrs(),
            server=ServerSettings(fleet=fleet, server_port=0, peer_port=0, heartbeat_interval=5)))
            for fleet in FLEETS]
        try:
            statuses = wait_ready(actors, timeout=120, progress=lambda _: None)
            yield database, statuses
        finally:
            stop_servers(actors)
            testbed.stop()


def test_each_implementation_publishes_and_finds_the_others(fleet_of_implementations):
    from parsec.scheduler import job

    database, statuses = fleet_of_implementations
    assert {s["fleet"] for s in statuses} == set(FLEETS)
    settings = SchedulerSettings(fleets=FLEETS, rounds=3, interval=0, parquet_dir=None, http_timeout=120)
    reports = asyncio.run(job.run(settings, database))
    providers = {r.provide.fleet: r.provide for r in reports}
    assert set(providers) == set(FLEETS)  # round robin gave every implementation a turn
    for fleet, provide in providers.items():
        assert provide.error is None and provide.duration > 0, (fleet, provide)
    for report in reports:
        found = {r.fleet: r.error for r in report.retrievals}
        assert set(found) == set(FLEETS) - {report.provide.fleet}
        assert all(error is None for error in found.values()), (report.provide.fleet, found)


def test_registration_names_the_implementation(fleet_of_implementations):
    from parsec.store.db import connect_pool

    database, statuses = fleet_of_implementations

    async def rows():
        pool = await connect_pool(database)
        try:
            return [dict(r) for r in await pool.fetch(
                "SELECT fleet, peer_id, dependencies, server_port, peer_port FROM nodes_ecs")]
        finally:
            await pool.close()

    by_fleet = {row["fleet"]: row for row in asyncio.run(rows())}
    assert by_fleet["go"]["dependencies"]["dht"] == "go-libp2p-kad-dht"
    assert by_fleet["js"]["dependencies"]["dht"] == "@libp2p/kad-dht"
    assert {s["peer_id"] for s in statuses} == {row["peer_id"] for row in by_fleet.values()}
    for fleet, row in by_fleet.items():  # the Go and js programs' peers too fit the original's SMALLINT
        assert 20000 <= row["server_port"] <= 32767 and 20000 <= row["peer_port"] <= 32767, (fleet, row)
