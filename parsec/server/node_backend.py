"""The HTTP API's ``DhtBackend`` on a real ``DhtNode``: what each fleet measures.

Timing brackets exactly the DHT call (provide: lookup + ADD_PROVIDERs; retrieval: start
of the walk to the first provider record). Bookkeeping after the clock stops (forgetting
the provider so the next probe is not warm) is not timed. Failures are returned as data.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from parsec.net import driver
from parsec.net.node import DhtNode, RpcError
from parsec.server.backend import OperationResult


class NodeBackend:
    """Provide / first-provider retrieval with parsec's own Kademlia engine (fleet default)."""

    strategy = "classic-provide+first-provider-walk"

    def __init__(self, node: DhtNode, ready: Callable[[], bool],
                 spawn: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self.node = node
        self._ready = ready
        self._spawn = spawn  # runs cleanup after the HTTP answer has gone out
        self._settled = trio.Event()
        self._settled.set()

    def routing_table_size(self) -> int:
        return len(self.node.routing)

    def is_ready(self) -> bool:
        return self._ready()

    async def provide(self, key: bytes) -> OperationResult:
        started = time.perf_counter_ns()
        error, trace = "", None
        try:
            trace = await driver.classic_provide(self.node, key)
        except RpcError as failure:
            error = str(failure) or "provide failed"
        elapsed = time.perf_counter_ns() - started
        return OperationResult(elapsed, error, self.routing_table_size(), trace.as_dict() if trace else None)

    async def retrieve(self, key: bytes) -> OperationResult:
        await self._settled.wait()  # the previous probe's provider is forgotten first
        started = time.perf_counter_ns()
        provider, trace = await driver.find_first_provider(self.node, key)
        elapsed = time.perf_counter_ns() - started
        if provider is not None and provider.peer_id != self.node.me.peer_id:
            self._forget_later(provider.peer_id)
        error = "" if provider is not None else "not found"
        return OperationResult(elapsed, error, self.routing_table_size(), trace.as_dict())

    def _forget_later(self, peer_id: bytes) -> None:
        """Disconnect from the provider behind the answer (closing can take 100+ ms)."""
        settled = self._settled = trio.Event()

        async def forget() -> None:
            try:
                await self.node.forget(peer_id)
            finally:
                settled.set()

        self._spawn(forget)
