"""The full-routing-table client: sorted-key closest search, readiness, direct provides."""

import random

import pytest

from parsec.kad import (
    KEY_BITS,
    CrawlResult,
    DirectProvide,
    FullRoutingTable,
    Lookup,
    NotReady,
    PeerRef,
    closest_in_sorted,
    closest_peers,
)

from .simnet import SimNet, run_crawl, run_provide


def crawl_result(reachable: list[PeerRef], started_at: float = 0.0) -> CrawlResult:
    return CrawlResult(
        reachable=reachable, unreachable=[], incomplete=[], discovered=len(reachable),
        rpcs=0, responses=0, failures=0, timeouts=0, late_responses=0,
        started_at=started_at, finished_at=started_at + 60.0,
    )  # fmt: skip


# ---------------------------------------------------------------- closest_in_sorted


@pytest.mark.parametrize("size", [0, 1, 7, 20, 21, 500, 5_000])
def test_closest_in_sorted_matches_brute_force(size: int) -> None:
    rng = random.Random(size)
    keys = sorted(rng.getrandbits(KEY_BITS) for _ in range(size))
    for _ in range(50):
        target = rng.choice(keys) if keys and rng.random() < 0.2 else rng.getrandbits(KEY_BITS)
        for n in (1, 3, 20):
            found = [keys[i] for i in closest_in_sorted(keys, target, n)]
            assert found == sorted(keys, key=lambda key: key ^ target)[:n]
    assert closest_in_sorted(keys, 0, 0) == []


def test_closest_in_sorted_handles_clustered_keys() -> None:
    keys = sorted([5, 6, 7, 1 << 200, (1 << 200) + 1, (1 << 255) + 3])
    assert [keys[i] for i in closest_in_sorted(keys, 1 << 255, 2)] == [(1 << 255) + 3, 5]


# ---------------------------------------------------------------- readiness


def test_not_ready_before_the_first_crawl() -> None:
    table = FullRoutingTable()
    assert not table.ready and table.needs_refresh(0.0)
    for call in (table.provide_targets, table.lookup_seeds, lambda key: table.closest(key, 5)):
        with pytest.raises(NotReady, match="no crawl has completed"):
            call(42)
    with pytest.raises(NotReady):
        table.provide(42, now=0.0)
    table.start_crawl([PeerRef.from_id(b"bootstrap")], now=0.0)
    assert table.crawling and not table.needs_refresh(10_000.0)  # one crawl at a time
    table.finish_crawl(crawl_result([]))  # reached nobody: still not ready
    assert not table.ready
    with pytest.raises(NotReady):
        table.provide_targets(42)


def test_refresh_every_interval_from_crawl_start_to_crawl_start() -> None:
    table = FullRoutingTable(refresh_interval=600.0)
    peers = [PeerRef.from_id(b"%d" % i) for i in range(30)]
    table.start_crawl(peers[:1], now=100.0)
    table.finish_crawl(crawl_result(peers, started_at=100.0))
    assert table.ready and len(table) == 30 and peers[3] in table
    assert not table.needs_refresh(699.0) and table.needs_refresh(700.0)
    crawler = table.start_crawl([], now=700.0)  # seeded by the table itself
    assert len(crawler.poll(700.0)) == 30
    table.finish_crawl(crawl_result(peers[:25], started_at=700.0))
    assert len(table) == 25 and peers[27] not in table


# ---------------------------------------------------------------- on the simulated network


@pytest.fixture(scope="module")
def net() -> SimNet:
    return SimNet(1000, seed=13, dead=0.05, stale=1.0)


@pytest.fixture(scope="module")
def table(net: SimNet) -> FullRoutingTable:
    table = FullRoutingTable()
    bootstrap = random.Random(14).sample(net.live, 2)
    crawler = table.start_crawl(bootstrap, now=0.0, rpc_timeout=2.0, rng=random.Random(15))
    table.finish_crawl(run_crawl(net, crawler))
    return table


def keys(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(KEY_BITS) for _ in range(count)]


def test_after_the_crawl_it_provides_to_the_true_20_closest(
    net: SimNet, table: FullRoutingTable
) -> None:
    assert table.ready and set(table.peers()) == set(net.live)
    provider = net.random_live_peer().ref
    for key in keys(20, 16):
        truth = net.true_closest(key, 20, live_only=True)
        assert table.provide_targets(key) == truth
        trace = run_provide(net, table.provide(key, now=0.0), provider)
        result = trace.result
        assert result.strategy == "direct" and result.lookup is None and result.hops == 0
        assert result.rpcs == {"add_provider": 20}
        assert set(result.holders) == set(truth)
        assert result.time_to_return <= result.duration
        assert all(provider in net.peers[peer].records[key] for peer in truth)


def test_lookups_seeded_from_the_full_table_need_one_hop(
    net: SimNet, table: FullRoutingTable
) -> None:
    live = set(net.live)
    for key in keys(10, 17):
        # A client (not a peer of the network); "refill" settles the top k despite the dead
        # peers that answers still name, so the result is exact.
        lookup = Lookup(key, table.lookup_seeds(key), now=0.0, followup="refill")
        trace = net.run(lookup)
        truth = closest_peers(live, key, 20)
        assert trace.result.closest == truth and trace.result.hops == 1
        asked_live = [peer for peer in trace.sent if peer in live]
        assert set(truth) <= set(asked_live) and len(asked_live) <= 25


# ---------------------------------------------------------------- direct provide by hand


def direct(count: int = 20, **options) -> tuple[DirectProvide, list[PeerRef]]:
    targets = [PeerRef.from_id(b"t%d" % i) for i in range(count)]
    op = DirectProvide(7, targets, now=0.0, **options)
    assert [r.peer for r in op.poll(0.0)] == targets
    return op, targets


def test_direct_provide_returns_at_the_first_quiet_tick() -> None:
    op, targets = direct()
    for index, peer in enumerate(targets[:6]):  # 30 % of 20: the ticker starts at 0.15
        op.on_store_done(peer, True, 0.1 + index * 0.01)
    assert op.next_deadline() == pytest.approx(0.65)
    op.on_store_done(targets[6], True, 0.4)  # a success before the tick: keep waiting
    op.poll(0.65)
    assert not op.returnable and op.next_deadline() == pytest.approx(1.15)
    op.poll(1.15)  # no success since the last tick
    assert op.returnable and not op.done
    assert op.result.returnable_at == pytest.approx(1.15) and op.result.stores_ok == 7


def test_direct_provide_returns_when_half_succeeded() -> None:
    op, targets = direct(wait_fraction=0.9)
    for peer in targets[:10]:
        op.on_store_done(peer, True, 0.1)
    assert op.returnable  # 2 * successes + failures >= 20
    with pytest.raises(ValueError, match="sends no lookup requests"):
        op.on_response(targets[0], [], 0.2)


def test_direct_provide_to_nobody_is_done_at_once() -> None:
    op = DirectProvide(7, [], now=0.0)
    assert op.done and op.returnable and op.poll(0.0) == []
