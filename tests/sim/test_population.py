"""The simulated population: the routing-table fill model and the answers peers give."""

import random

import pytest

from parsec.kad import PeerRef, closest_peers, common_prefix_len
from parsec.sim.population import Population


@pytest.fixture(scope="module")
def population() -> Population:
    return Population.build(1500, 0.45, k=20, region_weights=[1, 2, 3], access_rtt=0.01, access_sigma=0.8, seed=3)


def buckets(owner: PeerRef, peers) -> dict[int, list[PeerRef]]:
    out: dict[int, list[PeerRef]] = {}
    for peer in peers:
        if peer != owner:
            out.setdefault(common_prefix_len(owner.key, peer.key), []).append(peer)
    return out


def test_every_bucket_holds_k_or_all_of_its_range(population: Population) -> None:
    for owner in random.Random(1).sample(population.reachable_indices, 40):
        me = population.refs[owner]
        table = buckets(me, population.table(owner))
        everyone = buckets(me, population.refs)
        assert me not in population.table(owner)
        for cpl, members in everyone.items():
            held = table.get(cpl, [])
            assert len(held) == min(20, len(members)), (owner, cpl)
            assert set(held) <= set(members)


def test_unreachable_ids_are_stale_entries_in_the_share_of_the_population(population: Population) -> None:
    assert len(population) == 1500 + round(1500 * 0.45 / 0.55)
    assert sum(population.reachable) == 1500 == len(population.reachable_indices)
    entries = [peer for owner in population.reachable_indices for peer in population.table(owner)]
    unreachable = sum(1 for peer in entries if not population.reachable[population.index_of[peer]])
    assert unreachable / len(entries) == pytest.approx(0.45, abs=0.02)


def test_with_stale_entries_each_table_lists_few_dead_ids_and_every_live_one_it_has_room_for() -> None:
    population = Population.build(1500, 0.45, k=20, region_weights=[1], access_rtt=0.0, access_sigma=0.0, seed=3,
                                  stale_entries=0.15)
    listed_by: dict[int, int] = {}
    dead_entries = total = 0
    for owner in population.reachable_indices:
        table = population.table(owner)
        total += len(table)
        for peer in table:
            index = population.index_of[peer]
            if not population.reachable[index]:
                dead_entries += 1
                listed_by[index] = listed_by.get(index, 0) + 1
        own = population.keys[owner]
        live_by_cpl: dict[int, int] = {}
        for index in population.reachable_indices:
            if index != owner:
                cpl = 256 - (own ^ population.keys[index]).bit_length()
                live_by_cpl[cpl] = live_by_cpl.get(cpl, 0) + 1
        held_live: dict[int, int] = {}
        for peer in table:
            if population.reachable[population.index_of[peer]]:
                cpl = 256 - (own ^ peer.key).bit_length()
                held_live[cpl] = held_live.get(cpl, 0) + 1
        assert held_live == {cpl: min(20, n) for cpl, n in live_by_cpl.items()}
    assert dead_entries / total == pytest.approx(0.15, abs=0.02)
    dead_ids = len(population) - 1500
    # a dead id is listed by a few tables, a live one by many
    assert dead_entries / dead_ids < 0.25 * (total - dead_entries) / 1500


def test_answers_are_the_brute_force_closest_of_the_table(population: Population) -> None:
    rng = random.Random(2)
    for owner in rng.sample(population.reachable_indices, 30):
        table = population.table(owner)
        own = population.keys[owner]
        for _ in range(40):
            target = rng.getrandbits(256) if rng.random() < 0.5 else own ^ rng.getrandbits(rng.randrange(1, 256))
            n = rng.choice([1, 3, 20, 21, 50])
            answer = population.closest(owner, target, n)
            assert sorted(answer, key=lambda p: p.key ^ target) == closest_peers(table, target, n)
            requester = rng.choice(table)
            answer = population.closest(owner, target, n, exclude=requester.key)
            expected = [p for p in closest_peers(table, target, n + 1) if p != requester][:n]
            assert sorted(answer, key=lambda p: p.key ^ target) == expected


def test_unreachable_peers_answer_nothing(population: Population) -> None:
    ghost = next(i for i in range(len(population)) if not population.reachable[i])
    with pytest.raises(ValueError, match="unreachable"):
        population.closest(ghost, 0, 20)


def test_the_same_seed_builds_the_same_network() -> None:
    build = lambda seed: Population.build(300, 0.3, k=8, region_weights=[1, 1], access_rtt=0.02,  # noqa: E731
                                          access_sigma=0.5, seed=seed)
    a, b, c = build(9), build(9), build(10)
    assert a.refs == b.refs and a.access == b.access and a.region == b.region and a.reachable == b.reachable
    assert [a.table(i) for i in a.reachable_indices] == [b.table(i) for i in b.reachable_indices]
    assert a.refs != c.refs


def test_true_closest_can_skip_peers_offline_now(population: Population) -> None:
    target = random.Random(5).getrandbits(256)
    everyone = population.true_closest(target, 20)
    assert everyone == closest_peers(population.refs, target, 20)
    offline = population.index_of[everyone[0]]
    saved = population.online[offline]
    population.online[offline] = 0
    try:
        online = population.true_closest(target, 20, online_only=True)
    finally:
        population.online[offline] = saved
    assert everyone[0] not in online and len(online) == 20
    assert all(population.online[population.index_of[p]] for p in online)
