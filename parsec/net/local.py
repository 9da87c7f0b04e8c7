"""Fleet hosts in this process: one libp2p host per fleet strategy on one trio thread.

What tests, benchmarks and notebooks need to drive the strategies directly, without the
HTTP server around them (the server runs the same strategies in ``parsec.server.runtime``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from parsec.kad.constants import RPC_TIMEOUT
from parsec.kad.trace import Trace
from parsec.loops import TrioThread, freeze_long_lived, host_lag_ms
from parsec.net import pylibp2p
from parsec.net.external_strategy import ExternalPeer
from parsec.net.strategies import DhtStrategy, make_strategy


def _stamp_lag(result: Any, lag_ms: float | None) -> None:
    """Put ``host_lag_ms`` into the trace of a strategy's result (a trace, or a tuple with
    one): the engine's ``Trace`` keeps it in ``extra``; the other fleets' traces hand out
    their own dict from ``as_dict()``."""
    for part in result if isinstance(result, tuple) else (result,):
        if isinstance(part, Trace):
            part.extra["host_lag_ms"] = lag_ms
            return
        if hasattr(part, "as_dict"):
            part.as_dict()["host_lag_ms"] = lag_ms
            return


class LocalFleets:
    """Start a host per fleet (registered before it connects anywhere); call into them.

    Under latency emulation a host's region follows from its peer id; give ``region`` to
    put every fleet's host in the same one, else fleets are compared from different places."""

    def __init__(self, fleets: Iterable[str], *, protocol_id: str = "/ipfs/kad/1.0.0", rpc_timeout: float = RPC_TIMEOUT,
                 latency=None, region: str | None = None, name: str = "local-fleets") -> None:
        self.fleets = list(fleets)
        self.protocol_id = protocol_id
        self.rpc_timeout = rpc_timeout
        self.latency = latency
        self.region = region  # under latency emulation every host sits there (comparable fleets)
        self.strategies: dict[str, DhtStrategy] = {}
        self.ids: dict[str, bytes] = {}
        self.loop = TrioThread(name, watch_lag=True).start()
        try:
            self.loop.start_service(self._serve)
        except BaseException:
            self.loop.stop()
            raise

    async def _serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with contextlib.AsyncExitStack() as stack:
            background = self._background = await stack.enter_async_context(trio.open_nursery())
            for fleet in self.fleets:
                placed = self.latency is not None and self.region is not None
                key = pylibp2p.keypair_in(self.region, self.latency) if placed else pylibp2p.keypair()
                host, listen = pylibp2p.create_host(key)
                strategy = self.strategies[fleet] = make_strategy(
                    fleet, host, background, protocol_id=self.protocol_id, rpc_timeout=self.rpc_timeout,
                    latency=self.latency)
                await stack.enter_async_context(host.run([listen]))
                if isinstance(strategy, ExternalPeer):  # go / js: that implementation's program hosts the peer
                    self.ids[fleet] = (await strategy.start()).peer_id
                    stack.push_async_callback(trio.to_thread.run_sync, strategy.stop)
                else:
                    self.ids[fleet] = host.get_id().to_bytes()
            task_status.started()
            await trio.sleep_forever()

    def __getitem__(self, fleet: str) -> DhtStrategy:
        return self.strategies[fleet]

    def run(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return self.loop.run(afn, *args)

    def timed(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Any, float, float]:
        """(result, wall seconds, CPU seconds of the trio thread) of one operation; the
        ``Trace`` in the result gets ``host_lag_ms``, as a server's does."""
        async def run() -> tuple[Any, float, float]:
            since = trio.current_time()
            cpu, wall = time.thread_time(), time.perf_counter()
            result = await afn(*args)
            seconds, cpu_seconds = time.perf_counter() - wall, time.thread_time() - cpu
            _stamp_lag(result, host_lag_ms(self.loop.lag, since))
            return result, seconds, cpu_seconds

        return self.loop.run(run)

    def join(self, fleet: str, peers) -> tuple[int, float]:
        """``fleet`` joins through ``peers`` (wire peers), then keeps its table up in the
        background as a server does; (routing table size, seconds to join)."""
        strategy = self.strategies[fleet]
        size, seconds, _ = self.timed(strategy.join, peers)
        self.loop.run_sync(self._background.start_soon, strategy.maintain)
        freeze_long_lived()
        return size, seconds

    def join_all(self, peers) -> dict[str, int]:
        """Every fleet joins through ``peers``; routing table size per fleet."""
        return {fleet: self.join(fleet, peers)[0] for fleet in self.strategies}

    def stop(self) -> None:
        self.loop.stop()

    def __enter__(self) -> LocalFleets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
