"""Churn of Go and js testbed peers: real programs, real sockets.

(a) ``leave`` / ``rejoin`` on a 20-peer program: a peer that left refuses TCP dials at its
    address and refuses commands; after ``rejoin`` it answers a kad PING from a py-libp2p
    host at the same address with the same peer id (Noise checks the id), with a filled
    routing table.
(b) ``ExternalShardActor.start_churn`` with a 2 s median: peers go offline and come back.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from parsec.cids import cid_v0_for
from parsec.net import wire
from parsec.net.external import ExternalPeers, ExternalPeersError, command_for
from parsec.net.local import LocalFleets
from parsec.net.node import RpcError
from parsec.testbed.actor import ExternalShardActor
from parsec.testbed.shard import ShardSpec

from .test_go_peers import go_binary  # noqa: F401  (fixture: builds the Go program)
from .test_js_peers import js_built  # noqa: F401  (fixture: installs the js program)

pytestmark = pytest.mark.integration

PREFIX = "/parsec-churn-test"
PEERS = 20


@pytest.fixture(params=["go", "js"])
def implementation(request) -> str:
    request.getfixturevalue("go_binary" if request.param == "go" else "js_built")
    return request.param


def eventually(check, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def tcp_refused(address) -> bool:
    """Whether a plain TCP connect to ``/ip4/…/tcp/PORT`` is refused."""
    host, port = address.value_for_protocol("ip4"), int(address.value_for_protocol("tcp"))
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_a_peer_that_left_refuses_dials_and_rejoins_at_the_same_address(implementation):
    program = ExternalPeers(command_for(implementation), peers=PEERS, protocol_prefix=PREFIX, seed=7,
                            name=f"{implementation}-churn")
    fleets = None
    try:
        peers = program.start()
        program.fill(peers, timeout=60)
        fleets = LocalFleets(["default"], protocol_id=f"{PREFIX}/kad/1.0.0", rpc_timeout=5, name="churn-ext")
        node = fleets["default"].node
        index = 5
        ref = fleets.loop.run_sync(node.learn, peers[index])

        def ping() -> bool:
            try:
                fleets.run(node.rpc, ref, wire.request(wire.PING, b""))
                return True
            except RpcError:
                return False

        assert ping(), "the peer did not answer before leaving"
        assert program.leave(index)["offline"] == 1
        address = peers[index].multiaddrs()[0]
        assert tcp_refused(address)
        assert not ping()
        _, key = cid_v0_for(os.urandom(64))
        with pytest.raises(ExternalPeersError, match="offline"):
            program.provide(index, key, timeout=10)
        with pytest.raises(ExternalPeersError, match="already offline"):
            program.leave(index)
        stats = program.stats()
        assert stats["offline"] == 1 and stats["peers"] == PEERS

        back = program.rejoin(index, timeout=15)
        assert back["rt_size"] >= 10 and back["offline"] == 0, back
        assert not tcp_refused(address)
        assert eventually(ping, 10.0), "the rejoined peer does not answer at its old address"
        assert program.stats()["offline"] == 0
        with pytest.raises(ExternalPeersError, match="online"):
            program.rejoin(index)
        with pytest.raises(ExternalPeersError, match=r"\[0, 20\)"):
            program.leave(PEERS)
        # it works as a DHT peer again: its own provide is found by another peer
        assert program.provide(index, key, timeout=30)["error"] == ""
        found = program.find_first_provider((index + 7) % PEERS, key, timeout=30)
        assert found["provider"] == program.info["peers"][index]["id"], found
    finally:
        if fleets is not None:
            fleets.stop()
        program.stop()


def test_the_external_shard_churns_on_the_python_schedule(implementation):
    actor = ExternalShardActor(implementation, ShardSpec(1, PEERS, protocol_id=f"{PREFIX}/kad/1.0.0", seed=4,
                                                         churn_session=2.0))
    try:
        peers = actor.start()
        actor.fill(peers)
        assert actor.offline() == []
        assert actor.start_churn()
        assert eventually(lambda: len(actor.offline()) >= 2, 20.0), "no peers left within 20 s at a 2 s median"
        gone = actor.offline()
        assert actor.stats()["offline"] >= 1
        assert eventually(lambda: set(gone) - set(actor.offline()), 20.0), "no peer came back within 20 s"
        churn = actor.churn
        assert churn.schedule.leaves >= 2 and churn.schedule.returns >= 1 and churn.rejoin_failures == 0
    finally:
        actor.stop()
