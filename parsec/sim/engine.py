"""The discrete-event core: a virtual clock, one event heap, processes and futures.

Why this shape: the simulator runs the engine's sans-IO machines (``parsec.kad``) exactly as
the libp2p driver does — poll, send, feed outcomes stamped with ``now``, wake at the next
deadline — but with time as a number. One ``heapq`` of ``(time, sequence, callback,
args)`` entries orders everything (message arrivals, deadlines, churn, round starts); the
sequence number makes ties deterministic, so a seed fixes a run. Flows that wait (a
scheduler round, a server's join) are plain generators that yield a delay in seconds or a
``Future`` to wait for, so they read like the async code of the real scheduler and server.
``MachineRun`` is the simulator's counterpart of ``parsec.net.driver._drive``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator, Iterable
from typing import Any

from parsec.kad.machine import Machine, Outcome, Request
from parsec.kad.trace import Recorder

Process = Generator[Any, Any, Any]
"""A simulated flow: yields seconds to sleep or a ``Future`` to wait for; its return value
resolves the future ``EventLoop.spawn`` gave for it."""


class Future:
    """A value that arrives later on the virtual clock; waiters run when it is set."""

    __slots__ = ("done", "value", "_loop", "_waiters")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self.done = False
        self.value: Any = None
        self._waiters: list[Callable[[Any], None]] = []

    def set(self, value: Any = None) -> None:
        """Resolve (once; later calls are ignored) and schedule every waiter now."""
        if self.done:
            return
        self.done, self.value = True, value
        for waiter in self._waiters:
            self._loop.soon(waiter, value)
        self._waiters.clear()

    def then(self, callback: Callable[[Any], None]) -> None:
        """Run ``callback(value)`` once resolved (at once, as an event, if it already is)."""
        if self.done:
            self._loop.soon(callback, self.value)
        else:
            self._waiters.append(callback)


class EventLoop:
    """A virtual clock (seconds from 0) and the events due on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._sequence = itertools.count()
        self.events = 0  # handled so far, for progress and benchmarks

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``when`` (never before now)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._sequence), callback, args))

    def soon(self, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.now, callback, *args)

    def future(self) -> Future:
        return Future(self)

    def run(self, until: Future | None = None, *, stop_at: float | None = None) -> bool:
        """Handle events in time order until ``until`` resolves, the clock would pass
        ``stop_at`` (it then stands at ``stop_at``), or none is left. True if ``until``
        resolved (or none was given)."""
        heap = self._heap
        while heap:
            if until is not None and until.done:
                return True
            if stop_at is not None and heap[0][0] > stop_at:
                break
            when, _, callback, args = heapq.heappop(heap)
            self.now = when
            self.events += 1
            callback(*args)
        if stop_at is not None:
            self.now = max(self.now, stop_at)
        return until is None or until.done

    def spawn(self, process: Process) -> Future:
        """Start ``process`` now; the future resolves with its return value."""
        finished = self.future()
        self.soon(self._resume, process, finished, None)
        return finished

    def _resume(self, process: Process, finished: Future, value: Any) -> None:
        try:
            waited = process.send(value)
        except StopIteration as stop:
            finished.set(stop.value)
            return
        if isinstance(waited, Future):
            waited.then(lambda result: self._resume(process, finished, result))
        else:
            self.at(self.now + float(waited), self._resume, process, finished, None)

    def all_of(self, futures: Iterable[Future]) -> Future:
        """Resolves with the list of values once every one of ``futures`` has."""
        futures = list(futures)
        joined = self.future()
        remaining = [len(futures)]

        def one_done(_: Any) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                joined.set([f.value for f in futures])

        if not futures:
            joined.set([])
        for future in futures:
            future.then(one_done)
        return joined

    def timer(self, seconds: float) -> Future:
        """A future that resolves after ``seconds``."""
        fired = self.future()
        self.at(self.now + seconds, fired.set, None)
        return fired

    def first_of(self, *futures: Future) -> Future:
        """Resolves with ``(index, value)`` of the first of ``futures`` to resolve."""
        first = self.future()
        for index, future in enumerate(futures):
            future.then(lambda value, index=index: first.set((index, value)))
        return first


class MachineRun:
    """Drives one sans-IO ``Machine`` (``parsec.kad.machine``) on the loop, as
    ``parsec.net.driver._drive`` does over trio: poll, hand each request to ``transport``
    (which schedules its outcome through ``deliver``), apply outcomes, poll again, and wake
    at ``next_deadline`` when nothing arrives; ``recorder`` (``parsec.kad.trace.Recorder``)
    notes each request sent and each outcome. ``answered`` resolves once the machine is
    ``returnable`` — it keeps running until done, as stores answered-before-done do in the
    background; ``finished`` once it is done. ``cancel`` abandons it (outcomes arriving
    later are dropped, as a cancelled trio task's)."""

    __slots__ = ("loop", "machine", "transport", "recorder", "answered", "finished", "cancelled", "_wake")

    def __init__(self, loop: EventLoop, machine: Machine, transport: Callable[[Request, MachineRun], None],
                 recorder: Recorder | None = None) -> None:
        self.loop = loop
        self.machine = machine
        self.transport = transport
        self.recorder = recorder if recorder is not None else Recorder()
        self.answered = loop.future()
        self.finished = loop.future()
        self.cancelled = False
        self._wake: float | None = None
        self.step()

    def deliver(self, request: Request, outcome: Outcome) -> None:
        """Apply what came of ``request``, then poll again."""
        if self.cancelled or self.machine.done:
            return
        now = self.loop.now
        self.machine.on_outcome(request, outcome, now)
        self.recorder.settled(request, outcome, now)
        self.step()

    def cancel(self) -> None:
        self.cancelled = True
        self.answered.set()
        self.finished.set()

    def step(self) -> None:
        if self.cancelled:
            return
        machine = self.machine
        now = self.loop.now
        for request in machine.poll(now):
            self.recorder.sent(request, now)
            self.transport(request, self)
        if not self.answered.done and machine.returnable:
            self.answered.set()
        if machine.done:
            self.finished.set()
            return
        deadline = machine.next_deadline()
        if deadline is not None and (self._wake is None or deadline < self._wake or self._wake < now):
            self._wake = deadline
            self.loop.at(deadline, self._on_wake, deadline)

    def _on_wake(self, when: float) -> None:
        if self._wake == when:
            self._wake = None
            self.step()
