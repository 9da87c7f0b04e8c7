"""The discrete-event core: time order, ties in order of scheduling, processes and futures."""

from parsec.kad import Lookup, PeerRef
from parsec.sim.engine import EventLoop, MachineRun


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    loop, seen = EventLoop(), []
    for when, name in [(2.0, "c"), (1.0, "a"), (1.0, "b"), (0.5, "first")]:
        loop.at(when, seen.append, name)
    assert loop.run() and seen == ["first", "a", "b", "c"] and loop.now == 2.0


def test_processes_sleep_wait_and_return() -> None:
    loop = EventLoop()

    def child(delay: float, value: str):
        yield delay
        return value

    def parent():
        fast, slow = loop.spawn(child(1.0, "fast")), loop.spawn(child(3.0, "slow"))
        which = yield loop.first_of(slow, fast)
        both = yield loop.all_of([fast, slow])
        return which, both, loop.now

    done = loop.spawn(parent())
    assert loop.run(done)
    assert done.value == ((1, "fast"), ["fast", "slow"], 3.0)


def test_run_stops_at_a_time_and_the_clock_stands_there() -> None:
    loop, seen = EventLoop(), []
    loop.at(5.0, seen.append, "late")
    loop.run(stop_at=2.0)
    assert seen == [] and loop.now == 2.0
    loop.run(stop_at=10.0)
    assert seen == ["late"] and loop.now == 10.0


def test_a_machine_with_no_answers_is_woken_by_its_own_deadlines() -> None:
    loop = EventLoop()
    peers = [PeerRef(b"p%d" % i, i << 200) for i in range(3)]
    lookup = Lookup(0, peers, now=0.0, rpc_timeout=10.0)
    sent = []
    run = MachineRun(loop, lookup, lambda request, _run: sent.append(request.peer))  # nobody ever answers
    assert loop.run(run.finished)
    assert sent == sorted(peers, key=lambda p: p.key) and loop.now == 10.0
    assert lookup.result.timeouts == 3 and lookup.result.reason == "exhausted"
