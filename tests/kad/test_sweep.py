"""The sweeping provider (``parsec.kad.sweep*``): keyspace arithmetic by hand, one region's
reprovide on the simulated DHT (``simnet``), the schedule on an injected clock, one cycle."""

import random

import pytest

from parsec.kad import KEY_BITS, KeyPreimages, PeerRef, Request, key_of
from parsec.kad.sweep import (
    INDIVIDUAL_PROVIDE_THRESHOLD, MAX_EXPLORATION_PREFIX_SEARCHES, REPROVIDE_INTERVAL, RegionProvide,
    region_reached,
)
from parsec.kad.sweep_regions import (
    KeyStore, allocate_to_k_closest, assign_keys_to_regions, bits_of, matches, regions_from_peers,
    shortest_covered_prefix,
)
from parsec.kad.sweep_schedule import SweepCycle, SweepSchedule, WorkerPool, prefix_len_from_lookups

from .simnet import SimNet, drive


def peer_at(bits: str, n: int = 0) -> PeerRef:
    """A peer whose key starts with ``bits``, then ``n`` (distinct peers under one prefix)."""
    key = (int(bits, 2) << (KEY_BITS - len(bits))) | (n << 8) if bits else n << 8
    return PeerRef(b"p-" + bits.encode() + b"-%d" % n, key)


def multihashes(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [b"\x12\x20" + rng.randbytes(32) for _ in range(count)]


def keys_with_prefix(prefix: str, count: int, seed: int) -> list[bytes]:
    rng, out = random.Random(seed), []
    while len(out) < count:
        mh = b"\x12\x20" + rng.randbytes(32)
        if matches(prefix, key_of(mh)):
            out.append(mh)
    return out


# ---------------------------------------------------------------- keyspace arithmetic


def test_a_prefix_splits_only_while_both_halves_hold_k_peers() -> None:
    peers = [peer_at("00", i) for i in range(3)] + [peer_at("01", i) for i in range(3)] + \
            [peer_at("10", i) for i in range(2)] + [peer_at("11", i) for i in range(5)]
    regions = regions_from_peers(peers, "", 3, order=0)
    # "0" splits (3 and 3), "1" does not ("10" holds 2); the root splits (6 and 7)
    assert [r.prefix for r in regions] == ["00", "01", "1"]
    members = [p for r in regions for p in r.peers]
    assert len(members) == len(set(members)) == len(peers)  # each peer once
    assert [r.prefix for r in regions_from_peers(peers, "", 3, order=1 << 255)] == ["1", "00", "01"]  # own half first


def test_the_covered_prefix_is_one_bit_below_the_farthest_peer() -> None:
    target = int("0110" + "0" * 252, 2)
    closest = [peer_at("0110", 1), peer_at("0111", 2), peer_at("010", 3)]  # farthest shares 2 bits
    covered, inside = shortest_covered_prefix(target, closest)
    assert covered == "011" and set(inside) == set(closest[:2])
    covered, inside = shortest_covered_prefix(target, [peer_at("1", 1), peer_at("1", 2)])
    assert covered == "0" and inside == []  # all share 0 bits: the zone "0" is empty


def test_every_key_goes_to_its_region_or_the_nearest_one_and_to_its_k_closest() -> None:
    regions = regions_from_peers([peer_at("00", i) for i in range(2)] + [peer_at("01", i) for i in range(2)], "0",
                                 2, order=0)
    stray = int("1" * 8, 2) << (KEY_BITS - 8)
    inside = int("0101", 2) << (KEY_BITS - 4)
    assigned = assign_keys_to_regions(regions, [stray, inside])
    assert assigned["01"] == [inside] and assigned["00"] + assigned["01"] == [inside, stray] or \
        assigned["00"] == [stray]
    alloc = allocate_to_k_closest([inside], [p for r in regions for p in r.peers], 2)
    assert set(alloc) == {peer_at("01", 0), peer_at("01", 1)}


def test_the_20_percent_mark() -> None:
    assert region_reached(20, 16) and not region_reached(20, 17) and not region_reached(3, 3)
    assert region_reached(1, 0) and not region_reached(0, 0)


def test_keystore_finds_keys_by_prefix() -> None:
    store = KeyStore(keys_with_prefix("101", 5, 1) + keys_with_prefix("0", 4, 2))
    assert len(store.under("101")) == 5 and store.count_up_to("101", 3) == 3 and store.count_up_to("0", 9) == 4
    assert store.put(keys_with_prefix("101", 1, 1)) == []  # already there


# ---------------------------------------------------------------- one region on the simulated DHT


def reprovide(net: SimNet, store: KeyStore, prefix: str, *, seed: int = 3, **options):
    origin = net.random_live_peer()
    requests: list[Request] = []
    machine = RegionProvide(prefix, store, lambda k: origin.table.closest(k, net.k), now=0.0, order=origin.ref.key,
                            preimages=KeyPreimages(rng=random.Random(seed)), self_peer=origin.ref, **options)
    drive(net, machine, 0, origin.ref, watch=requests.extend)
    return machine.result, requests


def holders_of(net: SimNet, key: int) -> set[PeerRef]:
    return {ref for ref, peer in net.peers.items() if key in peer.records}


def test_every_key_of_a_region_ends_on_its_true_closest_live_peers() -> None:
    net = SimNet(600, seed=1)
    store = KeyStore(multihashes(400, 2))
    result, requests = reprovide(net, store, "0110")
    keys = store.under(result.covered)
    assert result.covered == "0110" and not result.individual and result.keys == len(keys) > 20
    for key in keys:
        assert holders_of(net, key) == set(net.true_closest(key, 20, live_only=True))
        assert result.holders[key] == 20
    assert result.share_reached == 1.0 and result.error is None
    assert 1 <= result.lookups <= 4 < result.keys  # a few lookups for the region, not one per key
    assert result.add_provider == 20 * len(keys) == result.stores_ok
    assert result.find_node == sum(1 for r in requests if r.kind == "find_node")
    assert all(r.key is not None for r in requests)
    assert result.wall is not None and result.wall > 0


def test_a_two_key_region_falls_back_to_one_lookup_per_key() -> None:
    net = SimNet(400, seed=4)
    store = KeyStore(keys_with_prefix("1011", INDIVIDUAL_PROVIDE_THRESHOLD, 5) + keys_with_prefix("0", 50, 6))
    result, requests = reprovide(net, store, "1011")
    assert result.individual and result.covered is None and result.keys == 2 and result.lookups == 2
    assert {r.key for r in requests} == {store.bytes_of(k) for k in store.under("1011")}  # no exploration key
    for key in store.under("1011"):
        assert holders_of(net, key) == set(net.true_closest(key, 20, live_only=True))
    assert result.share_reached == 1.0


def test_three_keys_are_explored() -> None:
    net = SimNet(400, seed=4)
    store = KeyStore(keys_with_prefix("1011", 3, 5))
    result, _ = reprovide(net, store, "1011")
    assert not result.individual and result.covered is not None and result.keys == 3


def test_an_exploration_makes_at_most_64_lookups() -> None:
    net = SimNet(2000, seed=7)  # the whole keyspace ("") holds ~100 regions: more than 64 lookups' worth
    store = KeyStore(multihashes(300, 8))
    result, _ = reprovide(net, store, "")
    assert result.lookups == MAX_EXPLORATION_PREFIX_SEARCHES


def test_dead_and_failing_peers_are_counted_and_given_up_after_three_failures_in_a_row() -> None:
    net = SimNet(600, seed=9, dead=0.15, failing=0.15)
    store = KeyStore(multihashes(800, 10))
    result, requests = reprovide(net, store, "01")
    sent: dict[PeerRef, int] = {}
    for r in requests:
        if r.kind == "add_provider":
            sent[r.peer] = sent.get(r.peer, 0) + 1
    dead = {p for p in sent if net.peers[p].behaviour == "dead"}
    failing = {p for p in sent if net.peers[p].behaviour == "failing"}
    assert dead and failing
    assert all(sent[p] <= 3 for p in dead | failing)  # given up after 3 failures in a row
    assert result.store_timeouts == sum(sent[p] for p in dead)
    assert result.stores_failed == sum(sent[p] for p in failing) + result.store_timeouts
    assert result.stores_ok == sum(n for p, n in sent.items() if p not in dead | failing)
    assert result.add_provider == sum(sent.values())
    assert result.share_reached == 1.0  # well above 20 % of each region's peers took them
    for key in store.under(result.covered):
        # the lookups drop peers that failed, so the records go to the closest live ones
        assert holders_of(net, key) <= set(net.true_closest(key, 20, live_only=True))
        assert result.holders[key] == len(holders_of(net, key)) >= 4


def test_time_must_not_go_backwards() -> None:
    net = SimNet(100, seed=1)
    origin = net.random_live_peer()
    machine = RegionProvide("", KeyStore(multihashes(5, 1)), lambda k: origin.table.closest(k, 20), now=5.0,
                            order=0, preimages=KeyPreimages(rng=random.Random(1)))
    with pytest.raises(ValueError):
        machine.poll(4.0)


# ---------------------------------------------------------------- the schedule


def test_the_schedule_spreads_the_regions_evenly_over_22_hours() -> None:
    order = random.Random(1).getrandbits(KEY_BITS)
    schedule = SweepSchedule(order, now=100.0, prefix_len=5)
    schedule.add_keys(multihashes(2000, 3), 100.0, provide=False)
    assert len(schedule.due) == 32 and not schedule.burst
    times = sorted(schedule.due.values())
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps == pytest.approx([REPROVIDE_INTERVAL / 32] * 31)
    assert 100.0 < times[0] and times[-1] <= 100.0 + REPROVIDE_INTERVAL
    assert schedule.due[bits_of(order, 5)] == 100.0 + REPROVIDE_INTERVAL  # own neighbourhood: slot 0


def test_a_key_under_a_scheduled_prefix_joins_it_and_a_wider_prefix_replaces_narrower_ones() -> None:
    schedule = SweepSchedule(0, now=0.0, prefix_len=3)
    schedule.schedule("0110", 0.0)
    schedule.schedule("0111", 0.0)
    assert schedule.prefix_for(int("0110" + "1" * 252, 2)) == "0110"
    assert not schedule.schedule("01101", 0.0)  # under a scheduled one
    assert schedule.schedule("011", 0.0) and set(schedule.due) == {"011"}


def test_a_burst_key_goes_out_before_the_next_periodic_region() -> None:
    schedule = SweepSchedule(0, now=0.0, prefix_len=4)
    schedule.add_keys(multihashes(300, 4), 0.0, provide=False)
    first_due = min(schedule.due.values())
    new = multihashes(1, 99)
    schedule.add_keys(new, 10.0)
    jobs = schedule.jobs(10.0)
    assert [(j.kind, j.keys) for j in jobs] == [("burst", (key_of(new[0]),))]
    assert 10.0 < first_due
    assert [j.kind for j in schedule.jobs(first_due)] == ["periodic"]


def test_worker_limits_two_periodic_one_burst_one_shared() -> None:
    pool = WorkerPool()
    for _ in range(3):  # 2 dedicated + the shared one
        pool.acquire("periodic")
    assert not pool.can_acquire("periodic") and pool.can_acquire("burst")
    pool.acquire("burst")
    assert pool.busy == 4 and not pool.can_acquire("burst")
    pool.release("periodic")
    assert pool.can_acquire("burst") and pool.can_acquire("periodic")
    with pytest.raises(ValueError):
        WorkerPool(4, 3, 2)


def test_due_regions_wait_for_a_periodic_worker() -> None:
    schedule = SweepSchedule(0, now=0.0, prefix_len=3, workers=WorkerPool(2, 1, 1))
    schedule.add_keys(multihashes(100, 5), 0.0, provide=False)
    jobs = schedule.jobs(REPROVIDE_INTERVAL * 2)  # every region due: one periodic worker
    assert [j.kind for j in jobs] == ["periodic"]


def test_prefix_length_from_lookups_is_the_mean_common_prefix_of_their_closest() -> None:
    near = [peer_at("10110", 1), peer_at("10111", 2), peer_at("1010", 3)]  # cpl 3
    far = [peer_at("0", 1), peer_at("1", 2)]  # cpl 0
    assert prefix_len_from_lookups([near, near, far, [peer_at("0", 1)]]) == 2  # (3+3+0)/3
    assert prefix_len_from_lookups([]) == 0


def test_one_cycle_reprovides_every_key_with_far_fewer_lookups_than_keys() -> None:
    net = SimNet(800, seed=11)
    origin = net.random_live_peer()
    preimages = KeyPreimages(rng=random.Random(12))
    rng = random.Random(13)
    prefix_len = prefix_len_from_lookups([net.true_closest(rng.getrandbits(KEY_BITS), 20) for _ in range(4)])
    schedule = SweepSchedule(origin.ref.key, now=0.0, prefix_len=prefix_len)
    keys = multihashes(1000, 14)
    schedule.add_keys(keys, 0.0, provide=False)
    slots = dict(schedule.due)

    def make(job, now):
        return RegionProvide(job.prefix, schedule.keystore, lambda k: origin.table.closest(k, 20), now=now,
                             order=origin.ref.key, preimages=preimages, kind=job.kind, self_peer=origin.ref)

    cycle = SweepCycle(schedule, make, now=0.0, until=REPROVIDE_INTERVAL)
    end = drive(net, cycle, 0, origin.ref, max_steps=10**6)
    result = cycle.result
    assert end <= REPROVIDE_INTERVAL + 120
    assert {key_of(mh) for mh in keys} <= {k for r in result.results for k in r.holders}
    assert result.share_reached == 1.0 and not result.failed
    assert result.lookups <= 0.1 * len(keys)
    for r in result.results:  # each region started in its slot, not before
        if r.prefix in slots:
            assert r.started_at == pytest.approx(slots[r.prefix])
    exact = sum(holders_of(net, key_of(mh)) == set(net.true_closest(key_of(mh), 20, live_only=True)) for mh in keys)
    assert exact >= 0.9 * len(keys)  # an exploration may miss a region peer (as go's may)
    assert all(len(holders_of(net, key_of(mh)) & set(net.true_closest(key_of(mh), 20))) >= 18 for mh in keys)
