"""The simulated wire: what a request costs and what it brings back, on the virtual clock."""

import random

import pytest

from parsec.kad import Failure, PeerRef, Reply, RoutingTable
from parsec.model.latency import LatencyModel
from parsec.sim.engine import EventLoop
from parsec.sim.network import Endpoint, SimNetwork, Transport
from parsec.sim.population import Population

MATRIX = LatencyModel(regions=("a", "b"), rtt_ms=((10.0, 100.0), (100.0, 10.0)), weights=(1.0, 1.0), dial_rtts=2.0)


def network(*, transport: Transport = Transport(), unresponsive: float = 0.0, refused: float = 0.0) -> SimNetwork:
    population = Population.build(400, 0.4, k=20, region_weights=[1, 1], access_rtt=0.0, access_sigma=0.0, seed=1)
    return SimNetwork(EventLoop(), population, MATRIX, transport, random.Random(1), unresponsive=unresponsive,
                      refused=refused)


def client(net: SimNetwork, region: int = 0, routing: bool = False) -> Endpoint:
    me = PeerRef(b"client", 12345)
    return Endpoint(me, region, routing=RoutingTable(me) if routing else None)


def ask(net: SimNetwork, who: Endpoint, peer: PeerRef, kind: str = "find_node", target: int = 7):
    """Send one request now; run the loop until it settles: (seconds it took, (closer,
    providers, error text — "" for a reply)), or None for the outcome if none came."""
    started, seen = net.loop.now, []
    net.send(who, peer, kind, target, seen.append)
    net.loop.run()
    if not seen:
        return net.loop.now - started, None
    outcome = seen[0]
    if isinstance(outcome, Failure):
        return net.loop.now - started, ([], [], outcome.error)
    assert isinstance(outcome, Reply)
    return net.loop.now - started, (list(outcome.closer), list(outcome.providers), "")


def peer_where(net: SimNetwork, *, reachable: bool, region: int | None = None) -> PeerRef:
    population = net.population
    for i in range(len(population)):
        if population.reachable[i] == reachable and (region is None or population.region[i] == region):
            return population.refs[i]
    raise AssertionError("no such peer")


def test_an_undialable_peer_costs_the_dial_timeout_and_leaves_the_table() -> None:
    net = network(transport=Transport(dial_timeout=5.0))
    who = client(net, routing=True)
    ghost = peer_where(net, reachable=False)
    who.routing.add(ghost)
    took, (closer, providers, error) = ask(net, who, ghost)
    assert took == pytest.approx(5.0)
    assert error == "dial timeout after 5s" and closer == providers == []
    assert ghost not in who.routing


def test_a_dial_in_backoff_fails_at_once_then_costs_the_timeout_again() -> None:
    net = network(transport=Transport(dial_timeout=5.0, backoff_base=5.0))
    who, ghost = client(net), peer_where(net, reachable=False)
    assert ask(net, who, ghost)[0] == pytest.approx(5.0)
    took, outcome = ask(net, who, ghost)  # within 5 s + 1 s × 1² of the failure
    assert took == 0.0 and outcome[2] == "dial backoff"
    net.loop.run(stop_at=net.loop.now + 6.1)
    assert ask(net, who, ghost)[0] == pytest.approx(5.0)
    no_backoff = network(transport=Transport(dial_timeout=5.0, backoff_base=0.0))
    ghost = peer_where(no_backoff, reachable=False)
    who = client(no_backoff)
    assert [ask(no_backoff, who, ghost)[0] for _ in range(2)] == [pytest.approx(5.0)] * 2


def test_a_new_connection_costs_the_dial_round_trips_then_requests_one_round_trip() -> None:
    net = network()
    who = client(net, region=0, routing=True)
    far = peer_where(net, reachable=True, region=1)
    took, (closer, _, error) = ask(net, who, far)
    assert error == "" and took == pytest.approx((1 + 2) * 0.100)  # 2 round trips to connect, 1 to ask
    assert len(closer) == 20
    took, _ = ask(net, who, far)
    assert took == pytest.approx(0.100)  # the connection is still open
    net.loop.run(stop_at=net.loop.now + 31)  # unused for longer than connection_idle: closed
    assert ask(net, who, far)[0] == pytest.approx(0.300)


def test_answers_are_the_responders_table_and_the_records_that_reached_it() -> None:
    net = network()
    who, holder = client(net), peer_where(net, reachable=True, region=0)
    index = net.population.index_of[holder]
    target = 99
    took, _ = ask(net, who, holder, "add_provider", target)
    assert took == pytest.approx(2 * 0.010)  # written once connected; no answer to wait for
    assert net.holders(target) == [holder]
    _, (closer, providers, _) = ask(net, who, holder, "get_providers", target)
    assert providers == [who.me]
    assert closer == net.population.closest(index, target, 20)


def test_a_peer_that_left_refuses_the_dial() -> None:
    net = network()
    who, peer = client(net), peer_where(net, reachable=True, region=1)
    net.population.online[net.population.index_of[peer]] = 0
    took, (_, _, error) = ask(net, who, peer)
    assert error == "dial failed: connection refused" and took == pytest.approx(0.100)


def test_an_unresponsive_peer_never_answers() -> None:
    net = network(unresponsive=1.0)
    took, outcome = ask(net, client(net), peer_where(net, reachable=True))
    assert outcome is None  # the requester's own RPC timeout settles it


def test_with_a_read_timeout_an_unresponsive_peer_fails_that_long_after_the_request() -> None:
    net = network(transport=Transport(read_timeout=10.0), unresponsive=1.0)
    took, (closer, _, error) = ask(net, client(net, region=0), peer_where(net, reachable=True, region=1))
    assert error == "no answer within 10s" and closer == []
    assert took == pytest.approx(2 * 0.100 + 10.0)  # connected (2 round trips), then 10 s of silence


def test_the_refused_share_of_unreachable_ids_fails_after_one_round_trip_the_rest_time_out() -> None:
    net = network(transport=Transport(dial_timeout=5.0), refused=0.25)
    population = net.population
    ghosts = [i for i in range(len(population)) if not population.reachable[i]]
    refusing = [i for i in ghosts if net.refuses[i]]
    assert len(refusing) == round(0.25 * len(ghosts))
    assert not any(net.refuses[i] for i in population.reachable_indices)
    who = client(net, region=0, routing=True)
    fast = population.refs[next(i for i in refusing if population.region[i] == 1)]
    slow = population.refs[next(i for i in ghosts if not net.refuses[i])]
    who.routing.add(fast)
    took, (closer, _, error) = ask(net, who, fast)
    assert error == "dial failed: connection refused" and closer == []
    assert took == pytest.approx(0.100)  # one round trip to the far region
    assert fast not in who.routing  # a failed dial all the same: out of the table, into backoff
    assert ask(net, who, fast)[1][2] == "dial backoff"
    assert ask(net, who, slow)[0] == pytest.approx(5.0)
