"""go-libp2p-kad-dht testbed peers (testbed/go, driven by parsec.net.external): real processes.

30 Go peers in one process and a 30-peer py ``PeerShard`` share a non-default protocol
prefix; every routing table is filled from the union. A py host running our ``default``
strategy joins through a few of them (the honest way), then:
(a) a record provided by a Go peer (go-libp2p-kad-dht's own Provide) is found by our strategy;
(b) a record provided by our strategy is found by Go peers' own FindProvidersAsync;
(c) latency conformance, in a second Go process with a two-region matrix: regions match
    ``parsec.model.latency``, a lookup that crosses regions pays dial + round trip, one inside a
    region does not, and a slow lookup does not block other commands;
(d) stats report routing tables and memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from parsec.cids import cid_v0_for
from parsec.kad import PeerRef, closest_peers, key_of
from parsec.model.latency import LatencyModel
from parsec.net.external import GO_BINARY, ExternalPeers, ExternalPeersError, go_available, go_command

from .interop import b58, network_with_py_peers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/parsec-go-test"
PROTOCOL = f"{PREFIX}/kad/1.0.0"
N_GO = N_PY = 30


@pytest.fixture(scope="session")
def go_binary() -> Path:
    """The built program: built (or found up to date) by scripts/build-go.sh."""
    if not go_available():
        if GO_BINARY.is_file():
            return GO_BINARY
        pytest.skip("the Go testbed program is not built and the Go toolchain is not installed "
                    "(install Go >= 1.26, then run scripts/build-go.sh)")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-go.sh")], check=True, timeout=1200)
    return GO_BINARY


@pytest.fixture(scope="module")
def network(go_binary):
    go = ExternalPeers(go_command(go_binary), peers=N_GO, protocol_prefix=PREFIX, seed=21, name="go-test")
    with network_with_py_peers("go", go, py_peers=N_PY, protocol=PROTOCOL, seed=21) as network:
        yield network


def test_listening_and_fill(network):
    go, filled = network["go"], network["filled"]
    assert len(go.peers) == N_GO and go.alive
    for entry in go.info["peers"]:
        assert entry["id"].startswith("12D3KooW")  # Ed25519
        assert entry["addrs"] and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in entry["addrs"])
    assert go.info["implementation"]["libp2p"] == "go-libp2p"
    assert go.info["implementation"]["kad_dht_version"].startswith("v")
    assert filled["peers"] == N_GO
    assert 20 <= filled["mean_rt"] <= N_GO + N_PY - 1
    assert filled["max_rt"] <= N_GO + N_PY - 1


def test_go_provide_is_found_by_our_strategy(network):
    go, shard, loop, strategy = network["go"], network["shard"], network["loop"], network["strategy"]
    _, key = cid_v0_for(os.urandom(1024))
    reply = go.provide(3, key, timeout=60)
    assert reply["error"] == "", reply
    assert reply["duration_ns"] > 0
    # go's Provide stores on the 20 closest of the 60 others (all reachable): every py peer among them
    # gets the record (go's ADD_PROVIDER is fire-and-forget: a moment later)
    provider = network["go_peers"][3].peer_id
    everyone = [PeerRef.from_id(p.peer_id) for p in network["go_peers"] + network["py_peers"]] + [strategy.node.me]
    closest = {p.peer_id for p in closest_peers([p for p in everyone if p.peer_id != provider], key_of(key), 20)}
    expected = closest & {p.peer_id for p in network["py_peers"]}
    deadline = time.monotonic() + 10
    while not expected <= set(shard.holders(key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected and expected <= set(shard.holders(key)), "go's ADD_PROVIDER missed py peers among the closest"
    found, trace = loop.run(strategy.find_first_provider, key)
    assert found == network["go_peers"][3].peer_id, trace.as_dict()
    # and another Go peer finds it too
    other = go.find_first_provider(20, key, timeout=30)
    assert other["error"] == "" and other["provider"] == b58(network["go_peers"][3].peer_id), other


def test_our_provide_is_found_by_go_peers(network):
    go, loop, strategy = network["go"], network["loop"], network["strategy"]
    _, key = cid_v0_for(os.urandom(1024))
    trace = loop.run(strategy.provide, key)
    # default fleet: ADD_PROVIDER to the 20 closest of the 60 others (all reachable), answered once all settled
    assert len(trace.targets) == 20 and set(trace.holders) == set(trace.targets), trace.as_dict()
    go_ids = {p.peer_id.hex() for p in network["go_peers"]}
    assert go_ids & set(trace.holders), "no Go peer took the record"
    me = b58(strategy.node.me.peer_id)
    for index in (0, 9, 17, 29):
        reply = go.find_first_provider(index, key, timeout=30)
        assert reply["error"] == "" and reply["provider"] == me, (index, reply)
        assert 0 < reply["duration_ns"] < 30e9


def test_unknown_key_and_bad_commands(network):
    go = network["go"]
    _, key = cid_v0_for(b"never provided " + os.urandom(8))
    reply = go.find_first_provider(0, key, timeout=20)
    assert reply["provider"] == "" and reply["error"] == "not found", reply
    with pytest.raises(ExternalPeersError, match="sha2-256"):
        go.provide(0, bytes.fromhex("0004deadbeef"))  # identity multihash: not a sha2-256 key
    with pytest.raises(ExternalPeersError, match="out of range"):
        go.provide(N_GO, key)
    with pytest.raises(ExternalPeersError, match="unknown command"):
        go.request({"cmd": "no_such_command"})


def test_stats_report_memory(network):
    stats = network["go"].stats()
    assert stats["peers"] == N_GO and len(stats["rt_sizes"]) == N_GO
    assert stats["mean_rt"] >= 20
    assert stats["mem_sys"] > 10 * 2**20 and stats["heap_inuse"] > 0
    assert stats["sys_per_peer"] > 0 and stats["goroutines"] > N_GO
    if sys.platform.startswith("linux"):
        assert stats["rss"] > 10 * 2**20


def test_commands_run_concurrently_and_across_regions_cost_round_trips(go_binary, tmp_path):
    matrix = tmp_path / "two-regions.json"
    matrix.write_text(json.dumps({"regions": ["east", "west"], "rtt_ms": [[0, 200], [200, 0]],
                                  "weights": [1, 1], "jitter": 0, "loss": 0, "dial_rtts": 2}))
    model = LatencyModel.load(matrix)
    go = ExternalPeers(go_command(go_binary), peers=24, latency_file=matrix, seed=5, name="go-latency")
    peers = go.start()
    try:
        regions = [model.region_of(p.peer_id) for p in peers]
        assert [entry["region"] for entry in go.info["peers"]] == regions  # same model as parsec.model.latency
        members = {name: [i for i, r in enumerate(regions) if r == name] for name in model.regions}
        lonely, crowd = sorted(members.values(), key=len)
        assert lonely and len(crowd) >= 4, members
        # The DHT holds the crowd's region only; the lonely peers' tables are filled from it
        # too, so every RPC a lonely peer makes crosses regions: 2 RTT dial + 1 RTT request.
        go.fill([peers[i] for i in crowd])
        home, away = model.index(regions[lonely[0]]), model.index(regions[crowd[0]])
        floor = model.dial_delay(home, away) + model.rtt(home, away)
        assert floor == pytest.approx(0.6)

        provider, neighbour, stranger = crowd[0], crowd[1], lonely[0]
        _, key = cid_v0_for(os.urandom(256))
        assert go.provide(provider, key, timeout=60)["error"] == ""
        expected = go.info["peers"][provider]["id"]
        near = go.find_first_provider(neighbour, key, timeout=30)  # RTT 0 within a region
        assert near["provider"] == expected, near
        far = go.find_first_provider(stranger, key, timeout=30)
        assert far["provider"] == expected, far
        assert far["duration_ns"] / 1e9 >= floor * 0.99, far
        assert near["duration_ns"] < far["duration_ns"], (near, far)

        # A slow lookup (each RPC of the stranger costs >= 1 RTT) must not hold up stats.
        _, unknown = cid_v0_for(b"never provided " + os.urandom(8))
        with ThreadPoolExecutor(2) as pool:
            def timed(fn, *args):
                result = fn(*args)
                return result, time.monotonic()

            slow = pool.submit(timed, go.find_first_provider, stranger, unknown, 30.0)
            time.sleep(0.02)
            stats, stats_done = timed(go.stats)
            lookup, lookup_done = slow.result(60)
        assert stats["peers"] == 24
        assert lookup["error"] == "not found" and lookup["duration_ns"] / 1e9 >= model.rtt(home, away)
        assert stats_done < lookup_done
    finally:
        go.stop()


def test_start_failure_reports_the_programs_stderr():
    program = [sys.executable, "-c", "import sys; sys.stderr.write('boom: bad flags\\n'); sys.exit(3)"]
    peers = ExternalPeers(program, peers=2, name="broken", start_timeout=20)
    with pytest.raises(ExternalPeersError, match=r"(?s)code 3.*boom: bad flags"):
        peers.start()


def test_go_command_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/build-go.sh"):
        go_command(tmp_path / "missing")
