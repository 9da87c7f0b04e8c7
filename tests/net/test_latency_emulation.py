"""Request round trips between two real peers in different regions match the matrix."""

import contextlib
import statistics

import pytest
import trio
from libp2p.peer.id import ID

from parsec.kad import PeerRef
from parsec.latency import LatencyModel
from parsec.loops import TrioThread
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode

pytestmark = pytest.mark.integration


def _key_in(model: LatencyModel, region: str):
    while True:
        key = pylibp2p.keypair()
        if model.region_of(ID.from_pubkey(key.public_key).to_bytes()) == region:
            return key


@pytest.mark.parametrize("a,b", [("eu-central-1", "sa-east-1"), ("us-east-2", "us-west-1"), ("ap-south-1", "af-south-1")])
def test_request_round_trips_match_the_matrix_within_10_percent(a, b):
    """What the emulation adds to a request's round trip (measured against the same pair
    with emulation off, to take out loopback CPU cost) is the matrix RTT, within 10 %."""
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

    async def measure():
        client, server = nodes
        client.learn(server.self_wire())
        target = PeerRef.from_id(server.me.peer_id)
        first = await ping(client, target)  # the first request pays the dial
        emulated, baseline = [], []
        for _ in range(15):  # alternate, so machine load weighs on both series alike
            client.latency = server.latency = model
            emulated.append(await ping(client, target))
            client.latency = server.latency = None
            baseline.append(await ping(client, target))
        return first, statistics.median(emulated) - statistics.median(baseline)

    try:
        loop.start_service(serve)
        first, rtt = loop.run(measure)
    finally:
        loop.stop()
    expected = model.rtt(model.index(a), model.index(b))
    assert expected * 0.9 <= rtt <= expected * 1.1
    assert first >= expected * (1 + model.dial_rtts) * 0.9  # dial set-up + the request
