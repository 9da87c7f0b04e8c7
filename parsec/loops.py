"""Event loops in threads: trio for libp2p, asyncio for asyncpg, in one process.

py-libp2p runs on trio; asyncpg, Ray async actors and the scheduler run on asyncio
(design.md). A component that needs both runs each loop in a thread of its own and calls
across with these small handles, so the same component works inside a Ray actor and from
the ``parsec`` CLI alike. Blocking calls into a loop must come from another thread.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

LAG_PERIOD = 0.01
"""Seconds between the lag ticker's wake-ups: a stall shorter than this may go unseen."""


class LoopLag:
    """The stalls of one event loop, from a ticker that asks to wake every ``LAG_PERIOD``.

    A wake-up ``lag`` seconds late means the loop ran nothing else for that long (another
    task, another thread holding the GIL, or the OS not scheduling the process), so a
    duration timed on that loop may hold up to ``lag`` of time it could not run. Pure
    bookkeeping fed with the loop's clock; ``watch`` is the ticker.
    """

    def __init__(self, keep: float = 900.0) -> None:
        self.keep = keep  # seconds of ticks kept (longer than any timed operation)
        self._ticks: deque[tuple[float, float]] = deque()  # (woke at, lag), oldest first
        self._due: float | None = None  # when the ticker's next wake-up is due

    def expect(self, due: float) -> None:
        """The ticker goes to sleep until ``due``."""
        self._due = due

    def tick(self, woke: float) -> None:
        """The ticker woke at ``woke`` (it was due at the last ``expect``)."""
        if self._due is None:
            return
        self._ticks.append((woke, max(0.0, woke - self._due)))
        self._due = None
        while self._ticks and self._ticks[0][0] < woke - self.keep:
            self._ticks.popleft()

    def worst(self, since: float, now: float) -> float:
        """The longest stall (seconds) that overlapped ``[since, now]``: ticks that woke
        from ``since`` on, and the wake-up overdue at ``now`` if the ticker is late."""
        worst = 0.0 if self._due is None else max(0.0, now - max(self._due, since))
        for woke, lag in reversed(self._ticks):
            if woke < since:
                break
            worst = max(worst, min(lag, woke - since))  # the part of (woke - lag, woke] after since
        return worst

    async def watch(self, period: float = LAG_PERIOD, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The ticker: run it in the loop to be watched."""
        task_status.started()
        while True:
            self.expect(trio.current_time() + period)
            await trio.sleep(period)
            self.tick(trio.current_time())


def freeze_long_lived() -> None:
    """Put every object alive now out of the garbage collector's reach (``gc.freeze``).

    A full collection stops the whole process, so every event loop in it, and scans every
    tracked object: with a start-up heap (imports, routing tables, peer stores) that is a
    stall of a few hundred milliseconds landing in whatever operation is being timed. Call
    once the long-lived state is built; later collections scan only what came after."""
    gc.collect()
    gc.freeze()


def host_lag_ms(lag: LoopLag | None, since: float) -> float | None:
    """The trace field ``host_lag_ms``: the longest stall of this trio loop since ``since``
    (its clock), in milliseconds; None where the loop is not watched."""
    if lag is None:
        return None
    return round(1000.0 * lag.worst(since, trio.current_time()), 1)


class TrioThread:
    """A trio loop in a daemon thread with a nursery for long-lived services; with
    ``watch_lag`` its stalls are recorded in ``lag`` (for loops that time operations)."""

    def __init__(self, name: str = "trio", *, watch_lag: bool = False) -> None:
        self._name = name
        self.lag: LoopLag | None = LoopLag() if watch_lag else None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> TrioThread:
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            trio.run(self._root)
        except BaseException as error:  # surfaced to start() or logged by the caller
            self._error = error
            self._ready.set()

    async def _root(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._nursery = nursery
            if self.lag is not None:
                await nursery.start(self.lag.watch)
            self._ready.set()
            await trio.sleep_forever()

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "TrioThread not started"
        return self._nursery

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``afn(*args)`` on the loop and wait for its result (from another thread)."""
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def start_service(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start(afn, *args)``: runs until it reports started, returns its value."""
        async def _start() -> Any:
            return await self.nursery.start(afn, *args)

        return self.run(_start)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive and self._nursery is not None:
            try:
                self.run_sync(self._nursery.cancel_scope.cancel)
            except (trio.RunFinishedError, RuntimeError):
                pass
            self._thread.join(timeout)


class AsyncioThread:
    """An asyncio loop in a daemon thread (asyncpg work beside a trio component)."""

    def __init__(self, name: str = "asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> AsyncioThread:
        self._thread.start()
        return self

    def submit(self, coro: Awaitable[T]) -> "asyncio.Future[T]":
        """Schedule without waiting (concurrent.futures.Future)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
