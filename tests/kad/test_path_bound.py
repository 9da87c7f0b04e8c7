"""The lower bound of an operation's duration on the path it took, composed by hand."""

import pytest

from parsec.kad import Lookup, PeerRef
from parsec.kad.path_bound import PathBound


def P(i: int) -> PeerRef:
    return PeerRef(b"peer-%d" % i, i)


def walk_to_provider() -> tuple[Lookup, PathBound]:
    """P(9) names P(5), P(5) names P(2), P(2) has the record: costs 0.1 + 0.3 (dialled) + 0.05."""
    lookup, bound = Lookup(0, [P(9), P(8)], now=0.0, alpha=1, goal="providers"), PathBound()
    costs = {P(8): 0.1, P(5): 0.3, P(2): 0.05, P(7): 1.0}
    for now, (peer, closer, providers) in enumerate([
        (P(8), [P(5), P(7)], []), (P(5), [P(2)], []), (P(2), [], [P(100)]),
    ]):
        assert [request.peer for request in lookup.poll(float(now))] == [peer]
        bound.asked(peer, costs[peer])
        bound.answered(peer, now + 0.5)
        lookup.on_response(peer, closer, now + 0.5, providers=providers)
    return lookup, bound


def test_a_retrieval_is_bounded_by_the_chain_that_led_to_the_record() -> None:
    lookup, bound = walk_to_provider()
    assert lookup.provider_path() == [P(8), P(5), P(2)]
    assert bound.retrieval(lookup.provider_path()) == pytest.approx(0.45)
    assert bound.retrieval([]) is None  # no record, no bound


def test_a_peer_never_asked_costs_nothing_and_paths_follow_referrers() -> None:
    lookup, bound = walk_to_provider()
    assert lookup.path_to(P(7)) == [P(8), P(7)]  # named by P(8), never asked
    assert bound.chain(lookup.path_to(P(7))) == pytest.approx(0.1)
    assert lookup.path_to(P(42)) == []


def test_a_provide_waits_for_the_walks_longest_chain_and_each_store_it_counted() -> None:
    lookup, bound = walk_to_provider()
    # the walk ended at 2.5: its end waited for P(2)'s answer (chain 0.45)
    assert bound.provide(lookup.path_to, 2.5, []) == pytest.approx(0.45)
    # an answer after the walk's end is not on its critical path
    assert bound.provide(lookup.path_to, 1.5, []) == pytest.approx(0.4)
    # a store to a peer that answered: its chain plus the store's own cost
    bound.stored(P(2), 0.0)
    bound.stored(P(7), 3.0)  # never answered: dialled after the walk, the dial is its cost
    assert bound.provide(lookup.path_to, 2.5, [P(2)]) == pytest.approx(0.45)
    assert bound.provide(lookup.path_to, 2.5, [P(2), P(7)]) == pytest.approx(3.0)
    # a direct store (no walk): the stores alone
    assert bound.provide(None, None, [P(7)]) == pytest.approx(3.0)


def test_the_wait_for_a_free_slot_along_the_path_is_summed() -> None:
    bound = PathBound()
    path = [P(8), P(5), P(2)]
    for peer, asked, answered in [(P(8), 0.0, 0.5), (P(5), 0.9, 1.2), (P(2), 1.2, 1.4)]:
        bound.asked(peer, 0.1, asked)
        bound.answered(peer, answered)
    assert bound.wait(path, 0.0) == pytest.approx(0.4)  # P(5) was named at 0.5, asked at 0.9
    assert bound.wait([P(8), P(9)], 0.0) is None  # P(9) never asked
