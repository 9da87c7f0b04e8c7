"""``bootstrap`` of the external testbed programs (testbed/go, testbed/js): real processes.

A parsec "implementation fleet" is one peer of another implementation, started alone
(``--peers 1``, no fill), that joins the testbed the honest way of that implementation:
``{"cmd":"bootstrap"}`` dials a few bootstrap peers and runs the implementation's own
routing-table refresh. Against a 40-peer py ``PeerShard`` (filled among itself), for go
and for js:
(a) bootstrap through 4 shard peers leaves a routing table of >= 10 peers;
(b) a record the lone external peer provides is found by a py ``default`` fleet;
(c) a record the py fleet provides is found by the external peer's find_first_provider;
plus the command's refusals (no peers, bad peer index) and a bootstrap peer that is not
there (error set, the others still used).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from parsec.cids import cid_v0_for
from parsec.net.local import LocalFleets
from parsec.server.bootstrap import parse_bootstrap
from parsec.net.external import (
    GO_BINARY,
    ExternalPeers,
    ExternalPeersError,
    go_available,
    go_command,
    js_command,
)
from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

from .interop import b58

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/parsec-boot-test"
PROTOCOL = f"{PREFIX}/kad/1.0.0"
N_PY = 40
SEED = 31


def go_cmd() -> list[str]:
    if not go_available():
        if GO_BINARY.is_file():
            return go_command()
        pytest.skip("the Go testbed program is not built and the Go toolchain is not installed")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-go.sh")], check=True, timeout=1200)
    return go_command()


def js_cmd() -> list[str]:
    if shutil.which("node") is None:
        pytest.skip("node (Node.js >= 20) is not installed")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-js.sh")], check=True, timeout=600)
    return js_command()


COMMANDS = {"go": go_cmd, "js": js_cmd}


@pytest.fixture(scope="module")
def testbed():
    shard = PeerShard(ShardSpec(0, N_PY, protocol_id=PROTOCOL, seed=SEED))
    fleets = None
    try:
        py_peers = shard.start()
        shard.fill(py_peers)
        fleets = LocalFleets(["default"], protocol_id=PROTOCOL, rpc_timeout=5, name="test-boot-fleets")
        joined = fleets.join_all(parse_bootstrap([peer_multiaddr(p) for p in py_peers[::10]]))
        assert joined["default"] >= 10, joined
        yield {"shard": shard, "py_peers": py_peers, "fleets": fleets}
    finally:
        if fleets is not None:
            fleets.stop()
        shard.stop()


def boot_entries(peers) -> list[dict]:
    return [{"id": b58(p.peer_id), "addrs": [str(a) for a in p.multiaddrs()]} for p in peers]


def wait_for_records(shard: PeerShard, before: int, timeout: float = 10.0) -> int:
    """ADD_PROVIDER is fire-and-forget for go and js: py peers store the record a moment later."""
    deadline = time.monotonic() + timeout
    while shard.stats()["provider_records"] <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    return shard.stats()["provider_records"]


@pytest.mark.parametrize("implementation", ["go", "js"])
def test_single_peer_bootstraps_provides_and_finds(testbed, implementation):
    shard, py_peers, fleets = testbed["shard"], testbed["py_peers"], testbed["fleets"]
    command = COMMANDS[implementation]()
    ext = ExternalPeers(command, peers=1, protocol_prefix=PREFIX, seed=SEED, name=f"{implementation}-boot")
    try:
        [me] = ext.start()
        me58 = b58(me.peer_id)

        # (a) join through 4 shard peers, the implementation's own way
        started = time.monotonic()
        reply = ext.request({"cmd": "bootstrap", "peer": 0, "peers": boot_entries(py_peers[3::10]),
                             "timeout_s": 60}, timeout=90)
        wall = time.monotonic() - started
        print(f"{implementation} bootstrap: {reply} (wall {wall:.2f}s)")
        assert reply["error"] == "", reply
        assert reply["rt_size"] >= 10, reply
        assert reply["connected"] == 4, reply
        assert 0 < reply["duration_ns"] <= wall * 1e9
        assert ext.stats()["mean_rt"] >= 10  # the table stays (no fill, no auto-refresh)

        # (b) a record provided by the lone peer is found by the py fleet
        before = shard.stats()["provider_records"]
        _, key = cid_v0_for(os.urandom(512))
        provided = ext.provide(0, key, timeout=60)
        assert provided["error"] == "", provided
        assert wait_for_records(shard, before) > before, f"{implementation}'s ADD_PROVIDER never reached a py peer"
        found, trace = fleets.run(fleets["default"].find_first_provider, key)
        assert found == me.peer_id, trace.as_dict()

        # (c) a record provided by the py fleet is found by the lone peer
        _, key = cid_v0_for(os.urandom(512))
        trace = fleets.run(fleets["default"].provide, key)
        assert len(trace.holders) >= 10, trace.as_dict()
        reply = ext.find_first_provider(0, key, timeout=30)
        assert reply["error"] == "", reply
        assert reply["provider"] == b58(fleets.ids["default"]), (reply, me58)
    finally:
        ext.stop()


@pytest.mark.parametrize("implementation", ["go", "js"])
def test_bootstrap_refusals_and_dead_bootstrap_peer(testbed, implementation):
    py_peers = testbed["py_peers"]
    ext = ExternalPeers(COMMANDS[implementation](), peers=1, protocol_prefix=PREFIX, seed=SEED + 1,
                        name=f"{implementation}-boot-bad")
    try:
        ext.start()
        with pytest.raises(ExternalPeersError, match="bootstrap"):
            ext.request({"cmd": "bootstrap", "peer": 0, "peers": [], "timeout_s": 5})
        with pytest.raises(ExternalPeersError, match=r"range|index"):
            ext.request({"cmd": "bootstrap", "peer": 1, "peers": boot_entries(py_peers[:1]), "timeout_s": 5})
        # a bootstrap peer that is gone (its process stopped): refused dial, the others still used
        ghost = ExternalPeers(COMMANDS[implementation](), peers=1, protocol_prefix=PREFIX, seed=SEED + 2,
                              name=f"{implementation}-ghost")
        [gone] = ghost.start()
        ghost.stop()  # its port is closed now
        reply = ext.request({"cmd": "bootstrap", "peer": 0, "timeout_s": 30,
                             "peers": boot_entries([gone]) + boot_entries(py_peers[5:7])}, timeout=60)
        assert reply["connected"] == 2, reply
        assert reply["rt_size"] >= 10 and reply["error"] == "", reply
        # only the dead peer: a normal reply with the error set
        reply = ext.request({"cmd": "bootstrap", "peer": 0, "timeout_s": 10, "peers": boot_entries([gone])},
                            timeout=40)
        assert reply["connected"] == 0 and "connect" in reply["error"], reply
    finally:
        ext.stop()
