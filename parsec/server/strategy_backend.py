"""The HTTP API's ``DhtBackend`` on a fleet's DHT strategy: what each fleet measures.

Timing brackets exactly the DHT call (provide: the strategy's provide until it may answer;
retrieval: start of the walk to the first provider record). Bookkeeping after the clock
stops — forgetting the provider so the next probe is not warm — happens after the answer
is sent and before the next retrieval starts. Failures are returned as data.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from parsec.loops import LoopLag, host_lag_ms
from parsec.net.node import RpcError
from parsec.net.strategies import DhtStrategy
from parsec.server.backend import NOT_FOUND, OperationResult


class StrategyBackend:
    """Provide / first-provider retrieval through one fleet's strategy. With ``lag`` (the
    serving loop's stalls) every trace carries ``host_lag_ms``: the longest stall of this
    loop while the operation ran, the error bar of its duration."""

    def __init__(self, strategy: DhtStrategy, ready: Callable[[], bool],
                 spawn: Callable[[Callable[[], Awaitable[None]]], None], lag: LoopLag | None = None) -> None:
        self.strategy = strategy
        self._ready = ready
        self._spawn = spawn  # runs cleanup after the HTTP answer has gone out
        self._lag = lag
        self._settled = trio.Event()
        self._settled.set()

    def routing_table_size(self) -> int:
        return self.strategy.routing_table_size()

    def is_ready(self) -> bool:
        return self._ready()

    async def provide(self, key: bytes) -> OperationResult:
        since = trio.current_time()
        started = time.perf_counter_ns()
        error, trace = "", None
        try:
            trace = await self.strategy.provide(key)
        except RpcError as failure:
            error = str(failure) or "provide failed"
        elapsed = time.perf_counter_ns() - started
        detail = self._with_lag(trace.as_dict() if trace else None, since)
        return OperationResult(_measured(detail, elapsed), error, self.routing_table_size(), detail)

    async def retrieve(self, key: bytes) -> OperationResult:
        await self._settled.wait()  # the previous probe's provider is forgotten first
        since = trio.current_time()
        started = time.perf_counter_ns()
        provider, trace = await self.strategy.find_first_provider(key)
        elapsed = time.perf_counter_ns() - started
        if provider is not None:
            self._forget_later(provider)
        error = "" if provider is not None else NOT_FOUND
        detail = self._with_lag(trace.as_dict(), since)
        if provider is None and detail.get("error"):  # another implementation's failure text
            error = str(detail["error"])
        elif provider is None and detail.get("failures") and detail.get("first_response_s") is None:
            # nobody answered (the network or our side is down): a failure, not an absence
            error = f"lookup failed: no peer answered ({detail['failures']} requests failed)"
        return OperationResult(_measured(detail, elapsed), error, self.routing_table_size(), detail)

    def _with_lag(self, detail: dict | None, since: float) -> dict | None:
        lag = host_lag_ms(self._lag, since)
        if lag is None:
            return detail
        return {**(detail or {}), "host_lag_ms": lag}

    def _forget_later(self, peer_id: bytes) -> None:
        """Disconnect from the provider behind the answer, in the background: closing the
        connection takes time that neither the answer nor its duration may include."""
        settled = self._settled = trio.Event()

        async def forget() -> None:
            try:
                await self.strategy.forget(peer_id)
            finally:
                settled.set()

        self._spawn(forget)


def _measured(detail: dict | None, elapsed_ns: int) -> int:
    """The DHT call's own duration when the implementation timed it (a Go or Node peer
    times its call in-process, without our IPC hop); else our wall clock around it."""
    if detail and isinstance(detail.get("duration_ns"), int) and detail["duration_ns"] > 0:
        return detail["duration_ns"]
    return elapsed_ns
