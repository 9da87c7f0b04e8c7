"""Fleets ``go`` and ``js``: a parsec server whose DHT work is done by another implementation.

The server keeps its HTTP API, registration, heartbeat and metrics; provide and
find-providers are performed by one peer of go-libp2p-kad-dht or js-libp2p kad-dht in a
child program (``parsec.net.external``), with that implementation's own code, timed by the
program around the DHT call alone (the parsec way). The peer joins the network the
implementation's own way (``bootstrap``: dial the bootstrap peers, run its refresh).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any, Protocol, runtime_checkable

import trio
from libp2p.peer.id import ID

from parsec.kad.constants import RPC_TIMEOUT
from parsec.net import ports
from parsec.net.external import ExternalPeers, command_for
from parsec.net.node import RpcError
from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.net.external")


class ExternalTrace:
    """The program's reply as a trace (``duration_ns`` is the DHT call alone)."""

    def __init__(self, operation: str, reply: dict[str, Any]) -> None:
        self.data = {"operation": operation, **{k: v for k, v in reply.items() if k not in ("id", "ok")}}

    def as_dict(self) -> dict[str, Any]:
        return self.data


@runtime_checkable
class ExternalPeer(Protocol):
    """What a strategy declares whose DHT peer is another program, not the server's own
    libp2p host: the server starts it once its host runs, registers *its* identity, and
    stops it at the end. A strategy without it (our engine's fleets, ``pylibp2p``) is the
    host's peer itself."""

    @property
    def peer_id(self) -> str: ...  # base58, once started
    @property
    def peer_port(self) -> int: ...
    async def start(self) -> WirePeer: ...
    def stop(self) -> None: ...


class ExternalStrategy(ExternalPeer):
    """One peer of ``implementation`` ("go" or "js") behind the DhtStrategy interface."""

    def __init__(self, implementation: str, *, protocol_id: str, latency=None, rpc_timeout: float = RPC_TIMEOUT) -> None:
        self.name = implementation
        latency_file = None
        if latency is not None:
            handle = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="parsec-latency-", delete=False)
            handle.write(latency.as_json())
            handle.close()
            latency_file = handle.name
        # the port it registers must fit the original's nodes_ecs (parsec.net.ports)
        self.peers = ExternalPeers(command_for(implementation), peers=1,
                                   protocol_prefix=protocol_id.removesuffix("/kad/1.0.0"),
                                   latency_file=latency_file, name=f"{implementation}-server",
                                   extra_args=["--port", str(ports.free_port("127.0.0.1"))])
        self.peer: WirePeer | None = None
        self.joined = False
        self._rt_size = 0

    # -- identity: the peer parsec registers is the external one -----------------------

    async def start(self) -> WirePeer:
        peers = await trio.to_thread.run_sync(self.peers.start)
        self.peer = peers[0]
        return self.peer

    @property
    def peer_id(self) -> str:
        return ID(self.peer.peer_id).to_base58() if self.peer else ""

    @property
    def peer_port(self) -> int:
        return int(self.peer.multiaddrs()[0].value_for_protocol("tcp")) if self.peer else 0

    def dependencies(self) -> dict:
        info = {k: v for k, v in self.peers.info.items() if k not in ("event", "peers")}
        return {"strategy": self.name, "dht": {"go": "go-libp2p-kad-dht", "js": "@libp2p/kad-dht"}[self.name],
                "program": info}

    def routing_table_size(self) -> int:
        return self._rt_size

    def ready(self) -> bool:
        return self.joined and self.peers.alive

    async def join(self, peers: list[WirePeer]) -> int:
        reply = await trio.to_thread.run_sync(self.peers.bootstrap, 0, peers)
        self._rt_size = int(reply.get("rt_size") or 0)
        if reply.get("error"):
            if self._rt_size <= 0:
                raise RpcError(f"{self.name} bootstrap: {reply['error']}")
            # connected, but its own table refresh did not finish in time (it waits out dial
            # timeouts to unreachable peers): the peer serves, as go's and js's DHTs do
            log.warning("%s bootstrap: %s; serving with %d peers in the routing table",
                        self.name, reply["error"], self._rt_size)
        self.joined = self._rt_size > 0
        return self._rt_size

    async def maintain(self) -> None:
        await trio.sleep_forever()

    def _note(self, reply: dict) -> None:
        if isinstance(reply.get("rt_size"), int):
            self._rt_size = reply["rt_size"]

    async def provide(self, key: bytes) -> ExternalTrace:
        reply = await trio.to_thread.run_sync(self.peers.provide, 0, key)
        self._note(reply)
        if reply.get("error"):
            raise RpcError(f"{self.name} provide: {reply['error']}")
        return ExternalTrace("provide", reply)

    async def find_first_provider(self, key: bytes) -> tuple[bytes | None, ExternalTrace]:
        reply = await trio.to_thread.run_sync(self.peers.find_first_provider, 0, key)
        self._note(reply)
        provider = reply.get("provider") or ""
        return (ID.from_base58(provider).to_bytes() if provider else None), ExternalTrace("retrieve", reply)

    async def forget(self, peer_id: bytes) -> None:
        return None  # the program hangs up on the provider and forgets it itself

    def stop(self) -> None:
        self.peers.stop()
