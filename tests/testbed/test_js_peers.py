"""js-libp2p testbed peers (testbed/js/peers.mjs) interoperating with py-libp2p: real processes.

30 js-libp2p kad-dht peers in one Node process and a 30-peer py ``PeerShard`` share a
non-default protocol prefix; every routing table is filled from the union. A py host
running our ``default`` strategy joins through a few of them, then:
(a) a record provided by a js peer (js's own provide) is found by our strategy;
(b) a record provided by our strategy is found by a js peer's own find-providers;
(c) stats report routing tables and memory.
Small extra js processes check the latency emulation: regions as ``parsec.model.latency``
computes them, cross-region lookups paying dial + round trip, same-region ones not, and a
slow lookup not blocking other commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from libp2p.peer.id import ID

from parsec.cids import cid_v0_for
from parsec.model.latency import LatencyModel
from parsec.net.external import JS_DIR, ExternalPeers, ExternalPeersError, js_command

from .interop import b58, network_with_py_peers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/parsec-js-test"
PROTOCOL = f"{PREFIX}/kad/1.0.0"
N_JS = N_PY = 30


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def js_built() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node (Node.js >= 20) is not installed")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-js.sh")], check=True, timeout=600)
    return JS_DIR


@pytest.fixture(scope="module")
def network(js_built):
    js = ExternalPeers(js_command(), peers=N_JS, protocol_prefix=PREFIX, seed=11, name="js")
    with network_with_py_peers("js", js, py_peers=N_PY, protocol=PROTOCOL, seed=11, fill_timeout=60) as network:
        yield network


# -- tests ---------------------------------------------------------------------------------

def test_listening_and_fill(network):
    js, filled = network["js"], network["filled"]
    assert len(js.peers) == N_JS
    for entry in js.info["peers"]:
        assert entry["id"].startswith("12D3KooW")  # Ed25519
        assert entry["addrs"] and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in entry["addrs"])
    assert filled["peers"] == N_JS and filled["known"] == N_JS + N_PY
    assert 20 <= filled["mean_rt"] <= N_JS + N_PY - 1


def _holds(loop, strategy, key: bytes) -> bool:
    """Whether our strategy's host holds a provider record for ``key`` in its own store."""
    return loop.run_sync(lambda: bool(strategy.node.providers.get(key, time.time())))


def test_js_provide_is_found_by_our_strategy(network):
    js, loop, strategy = network["js"], network["loop"], network["strategy"]
    _, key = cid_v0_for(os.urandom(256))
    reply = js.provide(3, key, timeout=30)
    assert reply["error"] == "", reply
    # js's own provide: a lookup, then ADD_PROVIDER to its k = 20 closest of the 60 others (all reachable);
    # every message it wrote is a request that was answered or an ADD_PROVIDER, none failed
    assert reply["duration_ns"] > 0 and reply["add_provider_sent"] == 20, reply
    rpcs = reply["rpcs"]
    assert rpcs["failed"] == 0 and rpcs["sent"] == rpcs["answered"] + reply["add_provider_sent"], reply
    assert rpcs["answered"] >= 20, reply  # its walk heard from at least its 20 closest
    held = _holds(loop, strategy, key)  # our host may be one of the 20 js stored on
    found, trace = loop.run(strategy.find_first_provider, key)
    assert found == network["js_peers"][3].peer_id, trace.as_dict()
    got = trace.as_dict()
    if held:
        assert got.get("local") is True and got["rpc_total"] == 0, got
    else:
        assert not got.get("local") and got["rpcs"].get("GET_PROVIDERS", 0) >= 1 and got["hops"] >= 1, got


def test_our_provide_is_found_by_a_js_peer(network):
    js, loop, strategy = network["js"], network["loop"], network["strategy"]
    _, key = cid_v0_for(os.urandom(256))
    trace = loop.run(strategy.provide, key)
    # default fleet: ADD_PROVIDER to the 20 closest of the 60 others (all reachable), answered once all settled
    assert len(trace.targets) == 20 and set(trace.holders) == set(trace.targets), trace.as_dict()
    js_ids = [peer.peer_id.hex() for peer in network["js_peers"]]
    # 30 of the 60 peers are js: among 20 targets some are js, and 10 js peers at least are not
    holder = next(i for i, peer_id in enumerate(js_ids) if peer_id in trace.holders)
    walker = next(i for i, peer_id in enumerate(js_ids) if peer_id not in trace.targets)

    reply = js.find_first_provider(walker, key, timeout=30)  # must ask the network
    assert reply["error"] == "" and reply["provider"] == b58(strategy.node.me.peer_id), reply
    assert 0 < reply["duration_ns"] < 30e9
    assert reply["rpcs"]["sent"] >= 1 and reply["rpcs"]["answered"] >= 1 and reply["rpcs"]["failed"] == 0, reply

    reply = js.find_first_provider(holder, key, timeout=30)  # holds the record our provide stored on it
    assert reply["error"] == "" and reply["provider"] == b58(strategy.node.me.peer_id), reply
    assert reply["rpcs"] == {"sent": 0, "answered": 1, "failed": 0}, reply  # its own store answered


def test_unknown_key_and_bad_commands(network):
    js = network["js"]
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    reply = js.find_first_provider(0, key, timeout=20)
    assert reply["provider"] == "", reply
    identity = bytes.fromhex("0004deadbeef")  # identity multihash: js-libp2p accepts only sha2-256 keys
    with pytest.raises(ExternalPeersError, match="sha2-256"):
        js.provide(0, identity)
    with pytest.raises(ExternalPeersError, match="index"):
        js.provide(N_JS, key)
    with pytest.raises(ExternalPeersError, match="unknown cmd"):
        js.request({"cmd": "no_such_command"})


def test_stats_report_memory(network):
    stats = network["js"].stats()
    assert stats["peers"] == N_JS and stats["protocol"] == PROTOCOL
    assert stats["memory"]["rss"] > 10 * 2**20 and stats["memory"]["heapUsed"] > 0
    assert stats["rss_per_peer_bytes"] > 0
    assert len(stats["routing_table_sizes"]) == N_JS and stats["mean_rt"] >= 20
    assert stats["inbound_requests"] > 0  # our strategy's lookups reached js peers
    assert stats["latency"] is None


def test_latency_regions_and_delays_follow_the_python_model(js_built, tmp_path):
    model = LatencyModel.load()
    matrix = tmp_path / "rtt.json"
    matrix.write_text(model.as_json())
    with ExternalPeers(js_command(), peers=8, seed=5, latency_file=matrix, name="js-latency") as js:
        entries = js.info["peers"]
        for entry in entries:
            assert entry["region"] == model.region_of(ID.from_base58(entry["id"]).to_bytes())
        js.fill(js.peers)
        home = model.index(entries[0]["region"])
        # peer 0 must dial some other peer and get at least one answer: one dial + one RTT
        floor = min(model.dial_delay(home, model.index(e["region"])) + model.rtt(home, model.index(e["region"]))
                    for e in entries[1:])
        _, key = cid_v0_for(os.urandom(64))
        t0 = time.monotonic()
        reply = js.provide(0, key, timeout=30)
        assert reply["error"] == "", reply
        assert reply["duration_ns"] / 1e9 >= floor
        assert time.monotonic() - t0 < 30
        stats = js.stats()
        assert stats["latency"]["dial_delays"] > 0 and stats["latency"]["delayed_ms_total"] > 0


def _two_region_matrix(path: Path, weights: list[float]) -> Path:
    path.write_text(json.dumps({"regions": ["near", "far"], "rtt_ms": [[0, 600], [600, 0]],
                                "weights": weights, "jitter": 0, "loss": 0, "dial_rtts": 2}))
    return path


def test_cross_region_lookups_pay_dial_and_round_trip_and_do_not_block(js_built, tmp_path):
    rtt, dial = 0.600, 1.200
    matrix = _two_region_matrix(tmp_path / "mixed.json", [1, 1])
    with ExternalPeers(js_command(), peers=6, seed=9, latency_file=matrix, name="js-mixed") as js:
        regions = [entry["region"] for entry in js.info["peers"]]
        assert set(regions) == {"near", "far"}, regions  # seed 9 puts peers in both regions
        js.fill(js.peers)
        _, key = cid_v0_for(b"nobody provides this " + os.urandom(8))
        with ThreadPoolExecutor(2) as pool:
            lookup = pool.submit(js.find_first_provider, 0, key, 20)
            time.sleep(0.2)
            t0 = time.monotonic()
            stats = js.stats()  # answered while the lookup is still waiting on the network
            assert time.monotonic() - t0 < 1.0 and not lookup.done()
            first = lookup.result(40)
        assert first["provider"] == "" and first["error"] == "", first
        # peer 0 asks every other peer; the first contact with the other region costs a dial
        # (dial_rtts × rtt) plus one request/response round trip
        assert first["duration_ns"] / 1e9 >= dial + rtt, first
        assert stats["latency"]["dial_delays"] >= 1
        _, key2 = cid_v0_for(b"nor this " + os.urandom(8))
        second = js.find_first_provider(0, key2, 20)  # connections are open now: no dial
        assert rtt <= second["duration_ns"] / 1e9 < first["duration_ns"] / 1e9, (first, second)

    matrix = _two_region_matrix(tmp_path / "near.json", [1, 0])
    with ExternalPeers(js_command(), peers=6, seed=9, latency_file=matrix, name="js-near") as js:
        assert {entry["region"] for entry in js.info["peers"]} == {"near"}
        js.fill(js.peers)
        _, key = cid_v0_for(b"nobody provides this either " + os.urandom(8))
        reply = js.find_first_provider(0, key, 20)
        # same region (0 ms): dials and requests cost only CPU, far less than one far dial
        assert reply["provider"] == "" and reply["duration_ns"] / 1e9 < dial, reply
