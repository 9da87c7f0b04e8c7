"""The engine's lookups on simulated networks: right answers, and no stalls under churn."""

import random
import statistics

import pytest

from parsec.cids import cid_v0_for
from parsec.kad import KEY_BITS, closest_peers, key_of
from parsec.sim.run import Simulation
from parsec.sim.settings import SimSettings
from parsec.sim.workload import lookup_from, run_lookups


def simulation(**changes) -> Simulation:
    settings = dict(peers=1500, unreachable=0.0, churn_session=0, fleets=["default", "optprov"],
                    regions=["eu-central-1", "us-west-1", "ap-south-1"], rounds=1, output=None, seed=4)
    return Simulation(SimSettings(**{**settings, **changes}))


@pytest.fixture(scope="module")
def clean() -> Simulation:
    return simulation()


def test_lookups_on_a_clean_network_find_the_brute_force_closest(clean: Simulation) -> None:
    population = clean.population
    results = run_lookups(clean.network, 60, concurrency=10, rng=random.Random(1))
    hops = []
    for origin, result in results:
        me = population.refs[origin]
        truth = closest_peers((p for p in population.refs if p != me), result.target, 20)
        assert result.closest == truth
        assert result.reason == "converged" and result.failures == result.timeouts == 0
        hops.append(result.hops)
    assert statistics.median(hops) >= 2  # real multi-hop routing, not an oracle table


def test_among_stale_entries_lookups_answer_with_reachable_peers_near_the_truth() -> None:
    sim = simulation(unreachable=0.45)
    population = sim.population
    found = []
    for origin, result in run_lookups(sim.network, 40, concurrency=10, rng=random.Random(2)):
        reachable = [p for p in population.true_closest(result.target, 80) if population.reachable[population.index_of[p]]]
        truth = [p for p in reachable if p != population.refs[origin]][:20]
        assert all(population.reachable[population.index_of[p]] for p in result.closest)
        assert result.failures > 0  # stale entries were met, and cost failures
        found.append(len(set(result.closest) & set(truth)))
    # go's followup asks the k closest once and does not chase what they name: with 45 %
    # unreachable ids, 15 % of each table (parsec.model.stale), about 14 of the true 20 closest
    # reachable peers answer (the testbed: 14); the refill followup finds all 20
    # (tests/kad/test_lookup.py, parsec/kad/optimistic.py)
    assert 12 <= statistics.mean(found) < 20


def test_churn_does_not_stall_lookups() -> None:
    sim = simulation(unreachable=0.3, churn_session=30)  # a peer leaves or returns every ~43 s on average
    results = run_lookups(sim.network, 300, concurrency=30, rng=random.Random(3))
    assert len(results) == 300
    assert all(result.reason in ("converged", "exhausted") and result.finished_at is not None
               for _, result in results)
    assert sim.churn.leaves > 1000 and sim.churn.returns > 500
    refused = sum(result.errors.get("dial failed: connection refused", 0) for _, result in results)
    assert refused > 0  # peers that left were met mid-run
    assert max(result.duration for _, result in results) < 60


def test_servers_join_provide_and_find_the_record(clean: Simulation) -> None:
    clean.join()
    loop = clean.loop
    for server in clean.servers:
        assert server.ready() and len(server.policy.routing) > 60
        assert all(size <= 20 for size in server.policy.routing.bucket_sizes().values())
    default = [s for s in clean.servers if s.fleet == "default"]
    cid, key = cid_v0_for(b"simulated content")
    provided = loop.spawn(default[0].provide(key))
    loop.run(provided)
    assert provided.value.error is None and provided.value.trace["strategy"] == "classic"
    holders = set(clean.network.holders(key_of(key)))
    truth = set(clean.population.true_closest(key_of(key), 20))
    assert len(holders & truth) >= 18  # classic provide found (nearly) the true 20 closest
    for retriever in default[1:]:
        found = loop.spawn(retriever.retrieve(key))
        loop.run(found)
        assert found.value.error is None and found.value.trace["operation"] == "retrieve"
        assert found.value.duration < provided.value.duration


def test_an_unknown_key_is_not_found(clean: Simulation) -> None:
    server = clean.servers[0]
    if not server.joined:
        clean.join()
    missed = clean.loop.spawn(server.retrieve(cid_v0_for(b"never provided")[1]))
    clean.loop.run(missed)
    assert missed.value.error == "not found" and missed.value.trace["rpc_total"] >= 20


def test_a_population_peer_looks_up_from_its_own_table(clean: Simulation) -> None:
    origin = clean.population.reachable_indices[7]
    target = random.Random(8).getrandbits(KEY_BITS)
    done = clean.loop.spawn(lookup_from(clean.network, origin, target))
    clean.loop.run(done)
    assert done.value.closest == [p for p in clean.population.true_closest(target, 21)
                                  if p != clean.population.refs[origin]][:20]
