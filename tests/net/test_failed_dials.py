"""A host that met many unreachable peers can still dial the reachable ones.

py-libp2p's resource manager counted dials that timed out as open connections and, past
1,000, refused every dial (``parsec.net.pylibp2p``, workaround 7): on a network with 45 %
unreachable ids a crawl or a long-running server hit that within minutes."""

import contextlib

import pytest
import trio

from parsec.kad import PeerRef
from parsec.loops import TrioThread
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode, RpcError
from parsec.net.wire import WirePeer
from parsec.testbed.ghosts import ghosts, serve_black_hole

pytestmark = pytest.mark.integration


def test_dials_still_work_after_3000_failed_ones() -> None:
    """3,000 dials to the testbed's black hole (the handshake never completes, as with an
    unreachable peer), then one to a live peer."""
    loop = TrioThread("failed-dials").start()
    nodes: list[DhtNode] = []

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                host, listen = pylibp2p.create_host(pylibp2p.keypair())
                node = DhtNode(host, rpc_timeout=5, dial_timeout=1.0)
                node.start()
                await stack.enter_async_context(host.run([listen]))
                nodes.append(node)
            hole = await stack.enter_async_context(trio.open_nursery())
            nodes.append(await hole.start(serve_black_hole))
            task_status.started()
            await trio.sleep_forever()

    async def dial_all() -> tuple[int, bool]:
        client, server, hole = nodes
        failed = 0
        slots = trio.Semaphore(200)

        async def dial_ghost(ghost: WirePeer) -> None:
            nonlocal failed
            ref = client.learn(ghost)
            async with slots:
                try:
                    await client.rpc(ref, wire.request(wire.PING, b""))
                except RpcError:
                    failed += 1

        async with trio.open_nursery() as dials:
            for ghost in ghosts(3000, hole):
                dials.start_soon(dial_ghost, ghost)
        client.learn(server.self_wire())
        await client.rpc(PeerRef.from_id(server.me.peer_id), wire.request(wire.PING, b""))
        return failed, client.connected(PeerRef.from_id(server.me.peer_id))

    try:
        loop.start_service(serve)
        failed, connected = loop.run(dial_all)
    finally:
        loop.stop()
    assert failed == 3000 and connected
