"""Churn: the pure schedule on a virtual clock, then real peers leaving and coming back."""

import random
import time

import pytest

from parsec.model.churn import ChurnSchedule
from parsec.net import wire
from parsec.net.local import LocalFleets
from parsec.net.node import RpcError
from parsec.testbed.shard import PeerShard, ShardSpec


def test_no_churn_without_a_session_length() -> None:
    schedule = ChurnSchedule(10, 0.0, now=0.0)
    assert schedule.next_at() is None and schedule.due(1e9) == [] and schedule.offline_count == 0


def test_sessions_have_the_configured_median_and_peers_alternate() -> None:
    schedule = ChurnSchedule(4000, 100.0, now=0.0, rng=random.Random(5))
    first_leave: dict[int, float] = {}
    last_state = {}
    for transition in schedule.due(100.0):
        assert last_state.get(transition.index, True) != transition.online  # leave, return, leave...
        last_state[transition.index] = transition.online
        first_leave.setdefault(transition.index, transition.at)
    # half the peers left within one median session...
    assert len(first_leave) / 4000 == pytest.approx(0.5, abs=0.03)
    # ...and with equal on and off medians a quarter of those came back: (1 - 1/4) / 2 offline
    assert schedule.offline_count / 4000 == pytest.approx(0.375, abs=0.03)
    assert schedule.leaves - schedule.returns == schedule.offline_count
    assert schedule.next_at() > 100.0


def test_transitions_come_in_time_order_and_bad_input_is_refused() -> None:
    schedule = ChurnSchedule(50, 10.0, now=5.0, rng=random.Random(1))
    times = [t.at for t in schedule.due(60.0)]
    assert times == sorted(times) and times[0] >= 5.0
    with pytest.raises(ValueError):
        ChurnSchedule(3, -1.0, now=0.0)


def eventually(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_real_peers_leave_refuse_dials_and_come_back_at_the_same_address() -> None:
    shard = PeerShard(ShardSpec(0, 10, seed=3, churn_session=1.5))
    fleets = None
    try:
        peers = shard.start()
        shard.fill(peers)
        fleets = LocalFleets(["default"], name="churn-test")
        node = fleets["default"].node
        refs = [fleets.loop.run_sync(node.learn, peer) for peer in peers]

        def ping(i: int) -> bool:
            try:
                fleets.run(node.rpc, refs[i], wire.request(wire.PING, b""))
                return True
            except RpcError:
                return False

        assert shard.start_churn()
        deadline = time.monotonic() + 20
        while not shard.offline() and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = shard.offline()
        assert gone, "no peer left within 20 s at a 1.5 s median session"
        left = gone[0]
        answered = ping(left)
        if left in shard.offline():  # still gone after the ping (not back in between)
            assert not answered  # its host is closed: the dial is refused
        # it comes back with the same key at the same address (it may leave again: sessions are short)
        assert eventually(lambda: left not in shard.offline() and ping(left), 20.0), "the peer never answered again"
        stats = shard.stats()
        assert stats["left"] >= 1 and stats["came_back"] >= 1 and stats["online"] <= 10
    finally:
        if fleets is not None:
            fleets.stop()
        shard.stop()
