"""The lookup state machine driven by hand, event by event.

Peers are ``P(i)`` with key ``i`` and the target is key 0, so a peer's distance to the
target is its number: P(1) is the closest.
"""

import pytest

from parsec.kad import Lookup, PeerRef, PeerState


def P(i: int) -> PeerRef:
    return PeerRef(b"peer-%d" % i, i)


def Ps(*numbers: int) -> list[PeerRef]:
    return [P(i) for i in numbers]


def lookup(*seeds: int, **options) -> Lookup:
    return Lookup(0, Ps(*seeds), now=0.0, **options)


def asked(walk: Lookup, now: float) -> list[PeerRef]:
    """``walk.poll(now)``: the peers it asks now (FIND_NODE or GET_PROVIDERS, by its goal)."""
    requests = walk.poll(now)
    assert all(request.kind == walk.kind and request.key is None for request in requests)
    return [request.peer for request in requests]


# ---------------------------------------------------------------- scheduling


def test_poll_asks_the_alpha_closest_then_waits_for_a_free_slot() -> None:
    walk = lookup(5, 3, 9, 1, 7, alpha=3)
    assert asked(walk, 0.0) == Ps(1, 3, 5)
    assert walk.state_of(P(1)) is PeerState.WAITING
    assert walk.state_of(P(7)) is PeerState.HEARD
    assert asked(walk, 0.1) == []
    walk.on_response(P(3), [], 0.2)
    assert asked(walk, 0.2) == [P(7)]
    assert set(walk.in_flight) == set(Ps(1, 5, 7))


def test_never_asks_self_or_a_peer_twice() -> None:
    me = P(2)
    walk = lookup(2, 4, 6, alpha=10, self_peer=me)
    assert asked(walk, 0.0) == Ps(4, 6)
    walk.on_response(P(4), Ps(2, 4, 6, 5), 0.1)  # names self, itself, a pending peer, a new one
    assert asked(walk, 0.1) == [P(5)]
    assert walk.state_of(me) is None
    assert walk.result.rpcs == walk.result.peers_contacted == 3


def test_a_response_caps_its_closer_peers_at_2k() -> None:
    walk = lookup(1000, k=3, alpha=1)
    asked(walk, 0.0)
    walk.on_response(P(1000), Ps(*range(10, 20)), 0.1)
    assert walk.result.peers_seen == 1 + 6


# ---------------------------------------------------------------- termination


def test_converges_when_the_beta_closest_responded() -> None:
    walk = lookup(1, 2, 3, 4, 5, alpha=2, beta=3, followup="off")
    assert asked(walk, 0.0) == Ps(1, 2)
    walk.on_response(P(1), [], 0.1)
    assert asked(walk, 0.1) == [P(3)]
    walk.on_response(P(2), [], 0.2)
    assert asked(walk, 0.2) == [P(4)]
    assert not walk.done
    walk.on_response(P(3), [], 0.3)
    assert walk.done and walk.reason == "converged"
    result = walk.result
    assert result.closest == Ps(1, 2, 3)
    assert result.closest_known == Ps(1, 2, 3, 4, 5)
    assert not result.exhausted and result.found
    assert result.finished_at == result.walk_ended_at == 0.3
    assert walk.state_of(P(4)) is PeerState.ABANDONED
    assert walk.in_flight == [] and walk.next_deadline() is None
    assert asked(walk, 0.4) == []


def test_failed_peers_do_not_count_towards_beta() -> None:
    walk = lookup(1, 2, 3, 4, alpha=4, beta=2, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    walk.on_failure(P(2), 0.1, "stream reset")
    assert not walk.done  # the 2 closest reachable are now P(1) and P(3)
    walk.on_response(P(3), [], 0.2)
    assert walk.reason == "converged"
    assert walk.result.errors == {"stream reset": 1}
    assert walk.result.closest == Ps(1, 3)


def test_a_closer_peer_heard_late_delays_convergence() -> None:
    walk = lookup(10, 20, 90, alpha=2, beta=2, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(10), [P(5)], 0.1)
    walk.on_response(P(20), [], 0.2)
    assert not walk.done  # P(5) is among the 2 closest and not asked yet
    assert asked(walk, 0.2) == Ps(5, 90)
    walk.on_response(P(5), [], 0.3)
    assert walk.reason == "converged"
    assert walk.result.closest == Ps(5, 10, 20)


def test_exhausted_when_nobody_is_left_to_ask() -> None:
    walk = lookup(1, 2, beta=3)
    asked(walk, 0.0)
    walk.on_response(P(2), [P(1)], 0.1)
    walk.on_response(P(1), [], 0.2)
    assert walk.reason == "exhausted"
    assert walk.result.exhausted and walk.result.found
    assert walk.result.closest == Ps(1, 2)


def test_exhausted_and_not_found_when_every_peer_fails() -> None:
    walk = lookup(1, 2)
    asked(walk, 0.0)
    walk.on_failure(P(1), 0.1)
    walk.on_failure(P(2), 0.1)
    result = walk.result
    assert result.exhausted and not result.found
    assert result.closest == [] and result.closest_known == []
    assert result.failures == 2 and result.hops == 0


def test_without_seeds_the_lookup_is_over_at_once() -> None:
    walk = Lookup(0, [], now=5.0)
    assert walk.done and walk.reason == "exhausted"
    assert walk.result.finished_at == walk.result.started_at == 5.0
    assert asked(walk, 6.0) == []


# ---------------------------------------------------------------- time


def test_requests_time_out_and_late_answers_are_ignored() -> None:
    walk = lookup(1, 2, 3, alpha=1, rpc_timeout=1.0)
    assert asked(walk, 0.0) == [P(1)]
    assert walk.next_deadline() == 1.0
    assert asked(walk, 0.9) == []
    assert asked(walk, 1.0) == [P(2)]  # P(1) timed out at its deadline, P(2) takes the slot
    assert walk.state_of(P(1)) is PeerState.TIMED_OUT
    assert walk.next_deadline() == 2.0
    walk.on_response(P(1), Ps(0), 1.2)  # late: ignored, its closer peer is not learned
    walk.on_failure(P(1), 1.3)  # also ignored
    assert walk.state_of(P(1)) is PeerState.TIMED_OUT
    assert walk.state_of(P(0)) is None
    result = walk.result
    assert (result.timeouts, result.late_responses, result.responses, result.failures) == (1, 1, 0, 0)


def test_an_answer_after_the_deadline_is_a_timeout() -> None:
    walk = lookup(1, 2, alpha=1, rpc_timeout=1.0)
    asked(walk, 0.0)
    walk.on_response(P(1), [], 1.5)  # the driver never polled at 1.0: the deadline still wins
    assert walk.state_of(P(1)) is PeerState.TIMED_OUT
    assert walk.result.late_responses == 1


def test_time_must_not_go_backwards() -> None:
    walk = lookup(1)
    asked(walk, 2.0)
    with pytest.raises(ValueError):
        asked(walk, 1.0)


def test_result_timestamps() -> None:
    walk = Lookup(0, Ps(1, 2, 3), now=10.0, beta=1, followup="off")
    running = walk.result
    assert running.reason is None and running.finished_at is None and running.duration is None
    asked(walk, 10.0)
    walk.on_response(P(3), [], 10.2)
    walk.on_response(P(1), [], 10.5)
    result = walk.result
    assert result.started_at == 10.0
    assert result.first_response_at == 10.2
    assert result.last_response_at == result.finished_at == 10.5
    assert result.duration == pytest.approx(0.5)


# ---------------------------------------------------------------- driver mistakes


def test_events_for_peers_without_a_request_in_flight_are_rejected() -> None:
    walk = lookup(1, 2, 3, alpha=1)
    asked(walk, 0.0)
    with pytest.raises(ValueError):
        walk.on_response(P(99), [], 0.1)  # never heard of
    with pytest.raises(ValueError):
        walk.on_failure(P(2), 0.1)  # heard, never asked
    walk.on_response(P(1), [], 0.1)
    with pytest.raises(ValueError):
        walk.on_response(P(1), [], 0.2)  # answered twice


@pytest.mark.parametrize(
    "options",
    [{"alpha": 0}, {"beta": 0}, {"k": 0}, {"rpc_timeout": 0}, {"goal": "values"},
     {"followup": "twice"}, {"max_providers": -1}],
)
def test_rejects_bad_parameters(options: dict) -> None:
    with pytest.raises(ValueError):
        lookup(1, **options)


def test_nothing_changes_once_done() -> None:
    walk = lookup(1, 2, beta=1, alpha=2, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    final = walk.result
    walk.on_response(P(2), Ps(7), 0.2)  # abandoned request answering after the end
    walk.on_failure(P(99), 0.3)  # even nonsense is ignored once done
    walk.stop(0.4)
    assert walk.result == final
    assert asked(walk, 0.5) == []


# ---------------------------------------------------------------- providers and hops


def test_providers_goal_stops_at_the_first_record() -> None:
    provider = PeerRef(b"provider", 12345)
    walk = lookup(10, 20, goal="providers", alpha=1)
    asked(walk, 0.0)
    walk.on_response(P(10), [P(5)], 0.1)  # P(5) is hop 2
    assert asked(walk, 0.1) == [P(5)]
    walk.on_response(P(5), [P(1)], 0.3, providers=[provider])
    assert walk.done and walk.reason == "found"
    result = walk.result
    assert result.found and result.providers == [provider]
    assert result.hops == 2
    assert result.first_provider_at == result.finished_at == 0.3
    assert result.rpcs == 2 and result.followup_rpcs == 0
    assert asked(walk, 0.3) == []


def test_providers_are_distinct_and_capped_at_max_providers() -> None:
    a, b, c = (PeerRef(name, i) for i, name in enumerate([b"a", b"b", b"c"], start=100))
    walk = lookup(1, 2, 3, goal="providers", max_providers=2)
    asked(walk, 0.0)
    walk.on_response(P(3), [], 0.1, providers=[a, a])
    assert not walk.done and walk.providers == [a]
    walk.on_response(P(2), [], 0.2, providers=[a, b, c])
    assert walk.reason == "found" and walk.result.providers == [a, b]


def test_max_providers_zero_collects_all_without_stopping_early() -> None:
    a, b = PeerRef(b"a", 100), PeerRef(b"b", 101)
    walk = lookup(1, 2, 3, 4, goal="providers", max_providers=0, beta=3, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1, providers=[a])
    walk.on_response(P(2), [], 0.2, providers=[b])
    assert not walk.done
    walk.on_response(P(3), [], 0.3, providers=[a])
    assert walk.reason == "converged" and walk.result.found
    assert walk.result.providers == [a, b]


def test_providers_goal_without_a_record_ends_not_found() -> None:
    walk = lookup(1, 2, goal="providers", beta=2, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    walk.on_response(P(2), [], 0.1)
    assert walk.done and not walk.result.found and walk.result.providers == []


def test_hops_follow_the_first_referrer() -> None:
    walk = lookup(40, alpha=1, beta=1, followup="off")
    asked(walk, 0.0)
    walk.on_response(P(40), [P(30)], 0.1)  # P(30): hop 2
    asked(walk, 0.1)
    walk.on_response(P(30), [P(20)], 0.2)  # P(20): hop 3
    asked(walk, 0.2)
    walk.on_response(P(20), [], 0.3)
    assert walk.result.closest == Ps(20, 30, 40)
    assert walk.result.hops == 3


# ---------------------------------------------------------------- followup and stop


def test_followup_once_asks_the_rest_of_the_top_k_at_once() -> None:
    walk = lookup(1, 2, 3, 4, 5, 6, 7, alpha=2, beta=2, k=5)
    assert asked(walk, 0.0) == Ps(1, 2)
    walk.on_response(P(1), [], 0.1)
    walk.on_response(P(2), [], 0.1)
    assert walk.phase == "followup" and walk.result.walk_ended_at == 0.1
    assert asked(walk, 0.1) == Ps(3, 4, 5)  # more than alpha at once; P(6), P(7) are not top-5
    walk.on_response(P(3), [P(0)], 0.2)  # closer peers are not followed in mode "once"
    walk.on_failure(P(4), 0.2)
    assert asked(walk, 0.2) == []  # a failed followup peer is not replaced
    walk.on_response(P(5), [], 0.3)
    result = walk.result
    assert result.reason == "converged" and result.finished_at == 0.3
    assert result.closest == Ps(1, 2, 3, 5)
    assert result.closest_known == Ps(1, 2, 3, 4, 5)  # go's result: taken when the walk ended
    assert (result.rpcs, result.followup_rpcs) == (5, 3)
    assert walk.state_of(P(0)) is None


def test_followup_once_abandons_requests_outside_the_top_k() -> None:
    walk = lookup(1, 2, 3, 4, 5, alpha=4, beta=1, k=2)
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    assert walk.phase == "followup"
    assert walk.in_flight == [P(2)]  # still awaited: it is in the top 2
    assert walk.state_of(P(3)) is PeerState.ABANDONED
    walk.on_response(P(3), [], 0.2)  # ignored
    walk.on_response(P(2), [], 0.3)
    assert walk.reason == "converged"
    assert walk.result.closest == Ps(1, 2)
    assert walk.result.late_responses == 1


def test_followup_refill_replaces_failed_peers_until_the_top_k_responded() -> None:
    walk = lookup(1, 2, 3, 4, 5, alpha=1, beta=1, k=3, followup="refill")
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    assert walk.phase == "followup"
    assert asked(walk, 0.1) == Ps(2, 3)
    walk.on_failure(P(2), 0.2)
    assert asked(walk, 0.2) == [P(4)]  # P(4) enters the top 3 reachable
    walk.on_response(P(3), [P(0)], 0.3)  # closer peers are followed in mode "refill"
    assert asked(walk, 0.3) == [P(0)]
    walk.on_response(P(0), [], 0.4)
    # The top 3 reachable, P(0), P(1), P(3), have all responded: P(4) is no longer needed.
    assert walk.done and walk.reason == "converged"
    assert walk.result.closest == Ps(0, 1, 3)
    assert walk.state_of(P(4)) is PeerState.ABANDONED


def test_followup_refill_lets_the_next_peer_in_when_one_stalls() -> None:
    """A stalled request (a dial to a dead entry) makes room in the k closest, as a failure
    does: otherwise a walk with a stall timeout settles for the k closest with the stalled
    ones among them and never asks the live peers behind them."""
    walk = lookup(1, 2, 3, 4, 5, alpha=1, beta=1, k=3, followup="refill", stall_timeout=1.0, rpc_timeout=5.0)
    asked(walk, 0.0)
    walk.on_response(P(1), [], 0.1)
    assert asked(walk, 0.1) == Ps(2, 3)
    walk.on_response(P(3), [], 0.2)  # P(2) says nothing: at 1.1 it stalls
    assert asked(walk, 1.1) == [P(4)]  # P(4) enters the top 3 that must answer
    walk.on_response(P(4), [], 1.2)
    assert walk.done and walk.result.closest == Ps(1, 3, 4)


def test_followup_refill_waits_for_stalled_peers_when_no_one_else_is_left() -> None:
    """Every peer the walk knows was asked and fewer than k answered: a stalled request is
    then waited for until it answers or times out (go waits for every followup request),
    not abandoned — a slow peer's answer still puts it among the closest."""
    walk = lookup(1, 2, 3, 4, alpha=4, beta=1, k=4, followup="refill", stall_timeout=1.0, rpc_timeout=5.0)
    assert asked(walk, 0.0) == Ps(1, 2, 3, 4)
    walk.on_response(P(1), [], 0.1)  # converged (beta 1); P(2), P(3), P(4) still awaited
    walk.on_response(P(4), [], 0.2)
    assert asked(walk, 1.0) == [] and walk.phase == "followup"  # P(2), P(3) stalled, nobody left
    assert not walk.done and walk.next_deadline() == 5.0
    walk.on_response(P(2), [], 1.5)  # a slow peer, not a dead one
    assert not walk.done
    asked(walk, 5.0)  # P(3) times out
    assert walk.done and walk.result.closest == Ps(1, 2, 4) and walk.result.timeouts == 1


def test_stop_ends_the_lookup_without_followup() -> None:
    walk = lookup(1, 2, 3, alpha=2)
    asked(walk, 0.0)
    walk.on_response(P(2), [], 0.1)
    walk.stop(0.2)
    assert walk.done and walk.reason == "stopped"
    assert walk.result.finished_at == walk.result.walk_ended_at == 0.2
    assert walk.result.closest == [P(2)]
    assert asked(walk, 0.3) == []


def test_a_stalled_request_frees_its_slot_but_its_answer_still_counts() -> None:
    walk = lookup(1, 2, 3, 4, 5, alpha=2, stall_timeout=1.0, rpc_timeout=5.0)
    assert asked(walk, 0.0) == Ps(1, 2)
    assert asked(walk, 0.5) == [] and walk.next_deadline() == 1.0  # wake up when they stall
    assert asked(walk, 1.0) == Ps(3, 4)  # P(1), P(2) no longer hold a slot
    walk.on_response(P(1), [], 1.5)  # late, but before rpc_timeout: a normal answer
    assert walk.state_of(P(1)) is PeerState.RESPONDED and walk.result.late_responses == 0
    assert asked(walk, 1.5) == []  # P(3), P(4) hold both slots until 2.0
    assert walk.next_deadline() == 2.0
    asked(walk, 5.0)  # P(2) times out at rpc_timeout as ever
    assert walk.state_of(P(2)) is PeerState.TIMED_OUT
    with pytest.raises(ValueError, match="stall_timeout"):
        lookup(1, stall_timeout=0)


def test_the_path_to_the_first_provider_follows_who_named_whom() -> None:
    walk = lookup(9, 8, alpha=1, goal="providers")
    assert walk.provider_path() == []
    assert asked(walk, 0.0) == [P(8)]
    walk.on_response(P(8), Ps(5, 7), 0.1)  # P(8) names P(5)
    assert asked(walk, 0.1) == [P(5)]
    walk.on_response(P(5), Ps(2), 0.2)  # P(5) names P(2)
    assert asked(walk, 0.2) == [P(2)]
    walk.on_response(P(2), [], 0.3, providers=[P(100)])
    assert walk.done and walk.result.hops == 3
    assert walk.provider_path() == Ps(8, 5, 2)
