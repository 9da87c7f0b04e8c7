"""The loop-lag recorder: pure bookkeeping by hand, then a real trio loop that stalls."""

import time

import pytest
import trio

from parsec.loops import LoopLag, TrioThread, host_lag_ms


def test_the_worst_stall_counts_only_the_part_inside_the_window() -> None:
    lag = LoopLag()
    for due, woke in [(0.01, 0.011), (0.021, 0.221), (0.231, 0.232)]:  # a 0.2 s stall from 0.021
        lag.expect(due)
        lag.tick(woke)
    assert lag.worst(0.0, 0.3) == pytest.approx(0.2)
    assert lag.worst(0.121, 0.3) == pytest.approx(0.1)  # only the stall's last 0.1 s is inside
    assert lag.worst(0.225, 0.3) == pytest.approx(0.001)
    lag.expect(0.242)
    assert lag.worst(0.225, 0.342) == pytest.approx(0.1)  # the ticker is 0.1 s overdue now


def test_old_ticks_are_dropped() -> None:
    lag = LoopLag(keep=1.0)
    lag.expect(0.0)
    lag.tick(0.5)
    for second in range(1, 5):
        lag.expect(float(second))
        lag.tick(float(second))
    assert lag.worst(0.0, 5.0) == 0.0  # the 0.5 s stall is older than ``keep``


def test_a_watched_trio_loop_sees_a_blocking_call_and_not_a_quiet_sleep() -> None:
    loop = TrioThread("lag-test", watch_lag=True).start()
    try:
        async def quiet() -> float | None:
            since = trio.current_time()
            await trio.sleep(0.2)
            return host_lag_ms(loop.lag, since)

        async def blocked() -> float | None:
            since = trio.current_time()
            time.sleep(0.15)  # the loop runs nothing else meanwhile
            await trio.sleep(0.05)
            return host_lag_ms(loop.lag, since)

        assert loop.run(blocked) >= 140.0
        assert loop.run(quiet) < 100.0  # a 2-core CI machine may stall a little, not 0.15 s
    finally:
        loop.stop()
    assert host_lag_ms(None, 0.0) is None


def test_freezing_takes_the_live_heap_out_of_collections() -> None:
    import gc

    from parsec.loops import freeze_long_lived

    kept = [[i] for i in range(1000)]  # long-lived state
    freeze_long_lived()
    try:
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
