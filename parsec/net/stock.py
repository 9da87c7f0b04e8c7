"""py-libp2p's own Kademlia (``KadDHT``), unchanged, for the ``pylibp2p`` fleet.

parsec measures lookups with its own engine (``parsec.net.driver``) because the stock
client is slow and not standard Kademlia (design.md). This fleet exists to measure that
stock implementation honestly beside ours, so everything here goes through KadDHT's
public calls — ``provide``, ``find_providers``, ``add_peer``, ``refresh_routing_table``
and its service — and nothing alters its lookup logic. What it needed to run at all on a
testbed is in ``parsec.net.pylibp2p`` as named environment fixes (``apply_workarounds``,
``keep_addresses``); RPC counting is observation only (``observe_kad_rpcs``).

KadDHT 0.8.1 facts this module relies on (read from its source):

- ``KadDHT(host, DHTMode.SERVER)`` registers its stream handler in the constructor, so
  construct it before the host connects anywhere (design.md).
- The protocol id is hard-coded: handler and every outbound stream use
  ``libp2p.kad_dht.common.PROTOCOL_ID`` = ``/ipfs/kad/1.0.0``. The constructor's
  ``protocol_prefix`` only switches config validation, so other prefixes are refused.
- Its per-RPC timeout is the module constant ``QUERY_TIMEOUT`` (10 s), not settable per
  instance; ``rpc_timeout`` here bounds only the dials this wrapper makes itself.
- ``provide`` returns True once any ADD_PROVIDER was *written*; nothing confirms storage.
- ``find_providers`` runs a full FIND_NODE lookup, then GET_PROVIDERS batches of α=10
  until it holds ``count`` providers; providers it finds are cached in its own provider
  store, so a repeated retrieval of a key on the same node answers locally.
- Its service refreshes the routing table at start and every 10 minutes (a self-lookup
  plus one FIND_NODE lookup per non-empty bucket each time) and republishes provided keys
  every 22 h.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.common import ALPHA, BUCKET_SIZE, PROTOCOL_ID, QUERY_TIMEOUT
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from parsec.kad.constants import RPC_TIMEOUT
from parsec.net import pylibp2p
from parsec.net.node import RpcError
from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.net.stock")

SUPPORTED_PROTOCOL = str(PROTOCOL_ID)


class StockError(RpcError):
    """A stock operation that failed or that py-libp2p reported as failed; ``trace`` says what it did."""

    def __init__(self, message: str, trace: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.trace = trace


class StockDht:
    """py-libp2p's KadDHT on a host, in server mode, driven through its public calls.

    One operation at a time per process where latency is the figure (pitfall 10): RPCs of
    overlapping operations, and of KadDHT's background refresh, count in every open trace.
    """

    def __init__(self, host: IHost, *, protocol_id: str = SUPPORTED_PROTOCOL, rpc_timeout: float = RPC_TIMEOUT) -> None:
        if protocol_id != SUPPORTED_PROTOCOL:
            raise ValueError(
                f"py-libp2p's KadDHT speaks only {SUPPORTED_PROTOCOL} (hard-coded in "
                f"libp2p.kad_dht.common.PROTOCOL_ID); cannot run it on {protocol_id!r}"
            )
        if rpc_timeout != QUERY_TIMEOUT:
            log.info("KadDHT's RPCs time out after its own %ss; rpc_timeout=%ss bounds only bootstrap dials",
                     QUERY_TIMEOUT, rpc_timeout)
        pylibp2p.apply_workarounds()
        pylibp2p.keep_addresses(host)
        self.host = host
        self.peer_id: ID = host.get_id()
        self.protocol_id = protocol_id
        self.rpc_timeout = rpc_timeout
        self.dht = KadDHT(host, DHTMode.SERVER)  # registers the protocol handler now
        self._rpcs = pylibp2p.observe_kad_rpcs(self.dht)
        self.running = False

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run KadDHT's service (maintenance loop, stale-peer pings) until cancelled.

        Start it after ``host.run`` is entered: the service's first act is a routing
        table refresh, which does nothing while the table is empty.
        """
        async with background_trio_service(self.dht):
            self.running = True
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.running = False

    async def bootstrap(self, peers: list[WirePeer], *, timeout: float = 60.0) -> int:
        """Join as py-libp2p does: connect, ``add_peer``, then KadDHT's own refresh.

        The refresh (a self-lookup plus one lookup per non-empty bucket) is bounded by
        ``timeout``; whatever it found by then stays. Returns the routing table size;
        ``StockError`` if no bootstrap peer could be reached.
        """
        reached, errors = 0, []
        for peer in peers:
            pid, addrs = ID(peer.peer_id), peer.multiaddrs()
            if pid == self.peer_id or not addrs:
                continue
            try:
                with trio.fail_after(self.rpc_timeout):
                    await self.host.connect(PeerInfo(pid, addrs))
            except Exception as error:  # dial failures, TooSlowError
                errors.append(f"{pid}: {type(error).__name__}: {error}")
                continue
            await self.dht.add_peer(pid)
            reached += 1
        if not reached:
            raise StockError(f"no bootstrap peer reachable ({len(peers)} given): " + "; ".join(errors[:3]))
        with trio.move_on_after(timeout) as scope:
            await self.dht.refresh_routing_table()
        if scope.cancelled_caught:
            log.warning("KadDHT's routing table refresh cut off after %ss", timeout)
        return self.routing_table_size()

    def routing_table_size(self) -> int:
        return self.dht.get_routing_table_size()

    async def provide(self, key: bytes) -> dict[str, Any]:
        """``KadDHT.provide`` of multihash ``key``; its trace, or ``StockError``.

        Success is KadDHT's own: at least one ADD_PROVIDER written (``holders`` counts
        them); it never learns whether a peer stored the record.
        """
        with self._rpcs.record() as sent:
            started = trio.current_time()
            try:
                ok = await self.dht.provide(key.hex())  # a hex multihash is one of its key forms
            except Exception as error:
                trace = _trace("provide", sent, started, ok=False)
                raise StockError(f"KadDHT.provide raised {type(error).__name__}: {error}", trace) from error
        trace = _trace("provide", sent, started, ok=ok)
        if not ok:
            raise StockError(f"KadDHT.provide reported failure: no ADD_PROVIDER sent after "
                             f"{trace['rpcs'].get('FIND_NODE', 0)} FIND_NODE RPCs", trace)
        return trace

    async def find_first_provider(self, key: bytes, *, count: int = 1) -> tuple[bytes | None, dict[str, Any]]:
        """``KadDHT.find_providers(key, count)``: the first provider's peer id (or None) and a trace.

        This is not a first-provider walk: py-libp2p finishes a whole FIND_NODE lookup
        before its first GET_PROVIDERS, then asks batches of α=10 until it holds
        ``count`` providers. That IS what it does, and the duration measures it as it is.
        ``count=1`` because a retrieval probe wants one provider (the smallest stock
        work); a key found earlier on this node is answered from its provider cache
        (``local`` in the trace, no RPCs).
        """
        with self._rpcs.record() as sent:
            started = trio.current_time()
            try:
                providers = await self.dht.find_providers(key.hex(), count)
            except Exception as error:
                trace = _trace("retrieve", sent, started, ok=False, count=count)
                raise StockError(f"KadDHT.find_providers raised {type(error).__name__}: {error}", trace) from error
        trace = _trace("retrieve", sent, started, ok=True, count=count, providers=len(providers),
                       local=bool(providers) and not sent)
        return (providers[0].peer_id.to_bytes() if providers else None), trace

    async def forget(self, peer_id: bytes) -> None:
        """Close connections to a peer and drop its addresses, so the next probe dials anew.

        Addresses of a peer in KadDHT's routing table stay: without them its lookups
        could not reach a table entry, which would change what is measured.
        """
        pid = ID(peer_id)
        try:
            await self.host.disconnect(pid)
        except Exception:
            pass
        if not self.dht.routing_table.peer_in_table(pid):
            pylibp2p.forget(self.host, pid)


def _trace(operation: str, sent: list[pylibp2p.KadRpc], started: float, *, ok: bool, **extra: Any) -> dict[str, Any]:
    """The trace of one stock operation, keyed like the engine's ``Trace.as_dict``."""
    rpcs: dict[str, int] = {}
    for rpc in sent:
        rpcs[rpc.kind] = rpcs.get(rpc.kind, 0) + 1
    return {
        "operation": operation,
        "ok": ok,
        "implementation": "py-libp2p KadDHT",
        "duration_s": trio.current_time() - started,
        "rpcs": rpcs,
        "rpc_total": len(sent),
        "failures": sum(not rpc.answered for rpc in sent),
        "peers_contacted": len({rpc.peer for rpc in sent}),
        "holders": sum(rpc.answered for rpc in sent if rpc.kind == "ADD_PROVIDER"),
        **extra,
    }


@dataclass(frozen=True)
class _Reported:
    """A finished trace dict behind the ``as_dict()`` the server's backend calls."""

    trace: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.trace


class StockStrategy:
    """The ``pylibp2p`` fleet behind ``parsec.net.strategies.DhtStrategy`` (what ``make_strategy`` builds)."""

    name = "pylibp2p"

    def __init__(self, host: IHost, background: trio.Nursery, *, protocol_id: str = SUPPORTED_PROTOCOL,
                 rpc_timeout: float = RPC_TIMEOUT) -> None:
        self.dht = StockDht(host, protocol_id=protocol_id, rpc_timeout=rpc_timeout)
        self.background = background  # KadDHT's service runs here once the host is up
        self.joined = False

    def dependencies(self) -> dict[str, Any]:
        return {"strategy": self.name, "provide": "stock", "dht": "py-libp2p KadDHT", "alpha": ALPHA,
                "k": BUCKET_SIZE, "protocol": SUPPORTED_PROTOCOL, "query_timeout_s": QUERY_TIMEOUT}

    def routing_table_size(self) -> int:
        return self.dht.routing_table_size()

    def ready(self) -> bool:
        return self.joined

    async def join(self, peers: list[WirePeer]) -> int:
        if not self.dht.running:
            await self.background.start(self.dht.run)
        size = await self.dht.bootstrap(peers)
        self.joined = size > 0
        return size

    async def maintain(self) -> None:
        await trio.sleep_forever()  # KadDHT's own service refreshes its table

    async def provide(self, key: bytes) -> _Reported:
        return _Reported(await self.dht.provide(key))

    async def find_first_provider(self, key: bytes) -> tuple[bytes | None, _Reported]:
        provider, trace = await self.dht.find_first_provider(key)
        return provider, _Reported(trace)

    async def forget(self, peer_id: bytes) -> None:
        await self.dht.forget(peer_id)
