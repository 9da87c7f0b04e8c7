"""One DHT of py, Go and js peers started by `start_testbed` on Ray: a record provided
by each implementation is found by the others."""

from __future__ import annotations

import os
import uuid

import pytest
import ray

from parsec.cids import cid_v0_for
from parsec.config import TestbedSettings
from parsec.net.external import GO_BINARY, JS_DIR
from parsec.net.local import LocalFleets
from parsec.server.bootstrap import parse_bootstrap

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not GO_BINARY.exists() or not (JS_DIR / "node_modules").is_dir(),
                       reason="Go/Node testbed programs not built (scripts/build-go.sh, scripts/build-js.sh)"),
]
PROTOCOL = "/ipfs/kad/1.0.0"


@pytest.fixture(scope="module")
def mixed(ray_context):
    from parsec.cluster.deploy import start_testbed

    testbed = start_testbed(TestbedSettings(mix="go=20,js=20,py=40", processes=1, seed=11, unreachable=0, churn_session=0), PROTOCOL,
                            name=f"mix-{uuid.uuid4().hex[:6]}", progress=lambda _: None)
    fleets = LocalFleets(["default"], name="mixed-client")
    try:
        assert fleets.join_all(parse_bootstrap(testbed.bootstrap_addrs(8)))["default"] > 10
        yield testbed, fleets.loop, fleets["default"]
    finally:
        fleets.stop()
        testbed.stop()


def test_the_testbed_holds_every_implementation(mixed):
    testbed, _, _ = mixed
    assert len(testbed.peers) == 80 and set(testbed.external) == {"go", "js"}


@pytest.mark.parametrize("provider", ["go", "js"])
def test_records_of_each_external_implementation_are_found_by_the_others(mixed, provider):
    testbed, loop, py = mixed
    _, key = cid_v0_for(os.urandom(256))
    stored = ray.get(testbed.external[provider].provide.remote(3, key))
    assert stored["error"] == "", stored
    found, trace = loop.run(py.find_first_provider, key)
    assert found is not None, trace.as_dict()
    other = "js" if provider == "go" else "go"
    answer = ray.get(testbed.external[other].find_first_provider.remote(7, key))
    assert answer["provider"], answer


def test_a_record_provided_by_our_engine_is_found_by_go_and_js(mixed):
    testbed, loop, py = mixed
    _, key = cid_v0_for(os.urandom(256))
    loop.run(py.provide, key)
    for implementation, actor in testbed.external.items():
        answer = ray.get(actor.find_first_provider.remote(5, key))
        assert answer["provider"], (implementation, answer)


def test_churn_reaches_py_go_and_js_shards(ray_context):
    """With churn on, ``start_testbed`` starts it on every shard: each loses peers and gets some back."""
    import time

    from parsec.cluster.deploy import start_testbed

    testbed = start_testbed(TestbedSettings(mix="go=10,js=10,py=10", processes=1, seed=12, unreachable=0,
                                            churn_session=2.0), PROTOCOL,
                            name=f"churn-{uuid.uuid4().hex[:6]}", progress=lambda _: None)
    try:
        assert len(testbed.shards) == 3
        seen_offline: list[set[int]] = [set() for _ in testbed.shards]
        came_back = [False] * len(testbed.shards)
        deadline = time.monotonic() + 30
        while not all(came_back) and time.monotonic() < deadline:
            for i, offline in enumerate(ray.get([shard.offline.remote() for shard in testbed.shards])):
                came_back[i] = came_back[i] or bool(seen_offline[i] - set(offline))
                seen_offline[i] |= set(offline)
            time.sleep(0.2)
        assert all(seen_offline), seen_offline
        assert all(came_back), (came_back, seen_offline)
    finally:
        testbed.stop()
