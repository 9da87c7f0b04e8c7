"""A real local campaign: Ray cluster, testbed of py-libp2p peers, server actors, Postgres.

Uses the Ray head named by ``RAY_ADDRESS`` (scripts/test.sh starts one), else starts a
private local cluster for the session. Every actor gets a unique name and is stopped.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings, TestbedSettings
from tests.conftest import scratch_database


@pytest.fixture(scope="session")
def ray_context():
    import ray

    from parsec.cluster.connect import start_ray

    context = start_ray(os.environ.get("RAY_ADDRESS"))
    yield context
    ray.shutdown()


CAMPAIGN_TOKEN = "campaign-bearer-token-5f1c2e9a"
"""The servers of the campaign require it; the scheduler job is given it (PARSEC_SERVER_AUTH_TOKEN)."""


@dataclass
class Campaign:
    database: DatabaseSettings
    network: NetworkSettings
    testbed: object
    actors: list
    statuses: list[dict]
    tag: str


@pytest.fixture(scope="module")
def campaign(ray_context, pg):
    """A 60-peer testbed and three ready servers of fleet ``default`` on a fresh database."""
    from parsec.cluster.deploy import deploy_server, start_testbed, stop_servers, wait_ready
    from parsec.server.actor import ServerActorConfig

    tag = uuid.uuid4().hex[:8]
    network = NetworkSettings(network="testbed")
    with scratch_database(pg) as database:
        testbed = start_testbed(TestbedSettings(peers=60, processes=2, unreachable=0, churn_session=0), network.protocol_id,
                                name=f"t-{tag}", progress=lambda _: None)
        actors = [
            deploy_server(ServerActorConfig(
                name=f"s-{tag}-{i}", network=network, database=database, bootstrap=testbed.bootstrap_addrs(),
                server=ServerSettings(server_port=0, peer_port=0, heartbeat_interval=5, auth_token=CAMPAIGN_TOKEN)))
            for i in range(3)
        ]
        try:
            statuses = wait_ready(actors, timeout=120, progress=lambda _: None)
            yield Campaign(database, network, testbed, actors, statuses, tag)
        finally:
            stop_servers(actors)
            testbed.stop()
