"""Who joins a server's routing table from an inbound request: go's rule.

Found against the Go parsec, whose servers are DHT clients unless ``--server-mode``:
they ask our peers kad requests but never answer them. Admitting every sender filled our
tables with peers that refuse the protocol, and every lookup through them paid a failed
stream. A sender joins only when identify lists our kad protocol among its own."""

import contextlib

import pytest
import trio

from parsec.kad import PeerRef
from parsec.loops import TrioThread
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode

pytestmark = pytest.mark.integration


def test_a_dht_client_is_not_admitted_a_dht_server_is() -> None:
    loop = TrioThread("admission").start()
    nodes: dict[str, DhtNode] = {}

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        async with contextlib.AsyncExitStack() as stack:
            for name in ("server", "client", "peer"):
                host, listen = pylibp2p.create_host(pylibp2p.keypair())
                node = DhtNode(host, rpc_timeout=5)
                if name != "client":  # a DHT client asks but registers no kad handler
                    node.start()
                await stack.enter_async_context(host.run([listen]))
                nodes[name] = node
            task_status.started()
            await trio.sleep_forever()

    async def ask_and_wait() -> tuple[bool, bool, bool]:
        server = nodes["server"]
        target = PeerRef.from_id(server.me.peer_id)
        for name in ("client", "peer"):
            nodes[name].learn(server.self_wire())
            await nodes[name].rpc(target, wire.request(wire.FIND_NODE, b"some key"))
        peer, client = nodes["peer"].me, nodes["client"].me
        with trio.move_on_after(15):
            while peer not in server.routing:
                await trio.sleep(0.1)
        await trio.sleep(0.5)  # the client's identify has had as long as the peer's
        identified = pylibp2p.serves_protocol(server.host, nodes["client"].peer_id, server.protocol_id)
        return peer in server.routing, client in server.routing, identified is False

    try:
        loop.start_service(serve)
        peer_admitted, client_admitted, client_identified = loop.run(ask_and_wait)
    finally:
        loop.stop()
    assert peer_admitted
    assert client_identified  # identify answered: the client lists no kad protocol
    assert not client_admitted


@pytest.mark.parametrize("serve", [True, False])
def test_a_client_mode_strategy_registers_no_kad_handler(serve) -> None:
    """``--server-mode=false``: our engine's fleets ask but never answer (the Go parsec's
    default); the other implementations have no client mode and say so."""
    from parsec.net.strategies import make_strategy

    async def handlers() -> list[str]:
        host, _ = pylibp2p.create_host(pylibp2p.keypair())
        async with trio.open_nursery() as background:
            make_strategy("optprov", host, background, protocol_id="/ipfs/kad/1.0.0", rpc_timeout=5, serve=serve)
            with pytest.raises(ValueError, match="no DHT client mode"):
                make_strategy("go", host, background, protocol_id="/ipfs/kad/1.0.0", rpc_timeout=5, serve=False)
            background.cancel_scope.cancel()
        return [str(p) for p in host.get_mux().get_protocols()]

    assert ("/ipfs/kad/1.0.0" in trio.run(handlers)) is serve
