"""Request round trips between two real peers in different regions match the matrix."""

import contextlib
import os
import statistics

import pytest
import trio
from libp2p.peer.id import ID

from parsec.kad import PeerRef
from parsec.loops import TrioThread
from parsec.model.latency import LatencyModel
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode

pytestmark = pytest.mark.integration


def _key_in(model: LatencyModel, region: str):
    while True:
        key = pylibp2p.keypair()
        if model.region_of(ID.from_pubkey(key.public_key).to_bytes()) == region:
            return key


@pytest.mark.parametrize("a,b", [("eu-central-1", "sa-east-1"), ("us-east-2", "us-west-1"),
                                 ("ap-south-1", "af-south-1"), ("ap-southeast-2", "us-east-2")])
def test_request_round_trips_match_the_matrix_within_10_percent(a, b):
    """What the emulation adds to a request's round trip (measured against the same pair
    with emulation off, to take out loopback CPU cost) is the matrix RTT, within 10 %, in
    both directions; and no single request ever comes back faster than the matrix allows."""
    model = LatencyModel.load()
    loop = TrioThread("latency").start()
    nodes = []

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack:
            for region in (a, b):
                host, listen = pylibp2p.create_host(_key_in(model, region))
                node = DhtNode(host, latency=model)
                node.start()
                await stack.enter_async_context(host.run([listen]))
                nodes.append(node)
            task_status.started()
            await trio.sleep_forever()

    async def ping(client, target) -> float:
        started = trio.current_time()
        await client.rpc(target, wire.request(wire.PING, b""))
        return trio.current_time() - started

    async def measure(client, server):
        client.learn(server.self_wire())
        target = PeerRef.from_id(server.me.peer_id)
        first = await ping(client, target)  # the first request pays the dial
        emulated, baseline = [], []
        for _ in range(15):  # alternate, so machine load weighs on both series alike
            client.latency = server.latency = model
            emulated.append(await ping(client, target))
            client.latency = server.latency = None
            baseline.append(await ping(client, target))
        return first, emulated, baseline

    async def both_ways():
        return [await measure(*nodes), await measure(*reversed(nodes))]

    try:
        loop.start_service(serve)
        directions = loop.run(both_ways)
    finally:
        loop.stop()
    expected = model.rtt(model.index(a), model.index(b))
    for (first, emulated, baseline), way in zip(directions, (f"{a}->{b}", f"{b}->{a}")):
        # each message sleeps its one-way delay (no jitter here): load can only add to a sample
        assert all(sample >= expected for sample in emulated), (way, expected, emulated)
        # Load only ever adds time, so the least sample of each series is its truest one. An
        # emulated request also waits out two sleeps the baseline does not: the event loop
        # wakes each up to a millisecond late, later on a loaded 2-core machine (measured
        # 1.5-3.5 ms in all), hence a 5 ms allowance above the 10 %.
        added = min(emulated) - min(baseline)
        assert expected * 0.9 <= added <= expected * 1.1 + 0.005, (way, expected, added, emulated, baseline)
        # and the typical request too (its median: 10 ms allowance)
        typical = statistics.median(emulated) - statistics.median(baseline)
        assert expected * 0.9 <= typical <= expected * 1.1 + 0.010, (way, expected, typical, emulated, baseline)
    first = directions[0][0]  # only the first direction dials: the second reuses the connection
    assert first >= expected * (1 + model.dial_rtts) * 0.9  # dial set-up + the request


def test_time_to_first_provider_is_never_below_the_round_trips_of_its_path():
    """The chain of peers that led to the record was asked one after the other: the sum of
    their matrix round trips is a lower bound the measured TTFPR must respect."""
    from parsec.cids import cid_v0_for
    from parsec.net.local import LocalFleets
    from parsec.server.bootstrap import parse_bootstrap
    from parsec.testbed.shard import PeerShard, ShardSpec, peer_multiaddr

    model = LatencyModel.load()
    shard = PeerShard(ShardSpec(0, 40, seed=9, latency=model))
    fleets = None
    try:
        peers = shard.start()
        shard.fill(peers)
        fleets = LocalFleets(["default", "optprov"], latency=model, name="path-bound")
        fleets.join_all(parse_bootstrap([peer_multiaddr(p) for p in peers[::8]]))
        checked = 0
        for _ in range(12):  # a record the default server holds itself is found locally (no path): next key
            if checked == 2:
                break
            _, key = cid_v0_for(os.urandom(256))
            fleets.run(fleets["optprov"].provide, key)
            (found, trace), seconds, _ = fleets.timed(fleets["default"].find_first_provider, key)
            assert found is not None
            if trace.extra.get("local"):
                continue
            bound = trace.extra["path_rtt_s"]
            assert 0 < bound <= seconds
            checked += 1
        assert checked >= 1
    finally:
        if fleets is not None:
            fleets.stop()
        shard.stop()
