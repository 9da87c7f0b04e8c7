"""The crawler: preimage keys, one peer by hand, whole simulated networks."""

import random

import pytest

from parsec.kad import (
    KEY_BITS,
    Crawler,
    Failure,
    KeyPreimages,
    PeerRef,
    Reply,
    Request,
    common_prefix_len,
    key_of,
    random_key_bytes_with_cpl,
)

from .simnet import SimNet, run_crawl

# ---------------------------------------------------------------- keys


def test_rejection_sampled_keys_have_the_asked_cpl() -> None:
    rng = random.Random(1)
    for cpl in range(8):
        target = rng.getrandbits(KEY_BITS)
        key_bytes = random_key_bytes_with_cpl(target, cpl, rng)
        assert common_prefix_len(target, key_of(key_bytes)) == cpl
        assert key_bytes[:2] == b"\x12\x20" and len(key_bytes) == 34  # a sha2-256 multihash


def test_preimage_table_serves_every_cpl_and_shares_the_work() -> None:
    rng = random.Random(2)
    preimages = KeyPreimages(max_bits=12, rng=random.Random(3))
    for _ in range(200):
        target = rng.getrandbits(KEY_BITS)
        for cpl in range(10):
            assert common_prefix_len(target, key_of(preimages.with_cpl(target, cpl))) == cpl
    # 2,000 keys for ≈ 2**10 distinct prefixes: far fewer hashes than 200 * 2**11 rejections.
    assert preimages.hashes < 20_000
    with pytest.raises(ValueError):
        preimages.with_cpl(0, 12)


# ---------------------------------------------------------------- one peer by hand


def test_own_id_then_the_missing_buckets_cover_a_whole_routing_table() -> None:
    net = SimNet(600, seed=3)
    peer = net.random_live_peer()
    crawler = Crawler([peer.ref], now=0.0, preimages=KeyPreimages(rng=random.Random(4)))
    [own] = crawler.poll(0.0)
    assert own == Request(peer.ref, "find_node", peer.ref.peer_id)  # its own id: its deepest buckets
    deepest = peer.table.closest(peer.ref.key, 20)
    crawler.on_outcome(own, Reply(deepest), 0.1)
    bucket_requests = [r for r in crawler.poll(0.1) if r.peer == peer.ref]
    shallowest = min(common_prefix_len(peer.ref.key, p.key) for p in deepest)
    assert [common_prefix_len(peer.ref.key, key_of(r.key)) for r in bucket_requests] == list(range(shallowest + 1))
    seen = set(deepest)
    for request in bucket_requests:
        answer = peer.table.closest(key_of(request.key), 20)
        crawler.on_outcome(request, Reply(answer), 0.2)
        seen.update(answer)
    assert seen == set(peer.table.peers())
    assert crawler.result.reachable == [peer.ref]


def test_a_short_own_id_answer_is_the_whole_table() -> None:
    a, b = PeerRef.from_id(b"a"), PeerRef.from_id(b"b")
    crawler = Crawler([a], now=0.0)
    [request] = crawler.poll(0.0)
    crawler.on_outcome(request, Reply([b]), 0.1)
    assert [r.peer for r in crawler.poll(0.1)] == [b]  # b's own id; no bucket requests for a


def test_timeouts_failures_and_late_answers() -> None:
    a, b, c = (PeerRef.from_id(name) for name in (b"a", b"b", b"c"))
    crawler = Crawler([a, b, c], now=0.0, rpc_timeout=2.0, max_in_flight=2)
    first = crawler.poll(0.0)
    assert [r.peer for r in first] == [a, b] and crawler.poll(0.5) == []  # the limit holds
    crawler.on_outcome(first[0], Failure("dial backoff"), 1.0)
    assert [r.peer for r in crawler.poll(1.0)] == [c]
    assert crawler.next_deadline() == 2.0
    crawler.poll(2.0)  # b times out
    crawler.on_outcome(first[1], Reply(), 2.5)  # late: ignored
    with pytest.raises(ValueError, match="no crawl request"):
        crawler.on_outcome(Request(c, "find_node", b"other key"), Reply(), 2.6)
    crawler.on_outcome(Request(c, "find_node", c.peer_id), Reply(), 2.7)
    assert crawler.done
    result = crawler.result
    assert result.reachable == [c] and set(result.unreachable) == {a, b}
    assert (result.failures, result.timeouts, result.late_responses) == (1, 1, 1)
    assert result.errors == {"dial backoff": 1} and result.duration == 2.7


def test_never_asks_itself() -> None:
    me, other = PeerRef.from_id(b"me"), PeerRef.from_id(b"other")
    crawler = Crawler([me, other], now=0.0, self_peer=me)
    [request] = crawler.poll(0.0)
    assert request.peer == other
    crawler.on_outcome(request, Reply([me]), 0.1)
    assert crawler.done and crawler.result.discovered == 1


# ---------------------------------------------------------------- whole networks


def test_crawl_finds_every_reachable_peer_and_marks_the_dead() -> None:
    net = SimNet(1000, seed=5, dead=0.1, failing=0.05, stale=1.0)
    seeds = random.Random(6).sample(net.live, 3)
    result = run_crawl(net, Crawler(seeds, now=0.0, rpc_timeout=2.0, rng=random.Random(7)))
    faulty = set(net.peers) - set(net.live)
    assert set(result.reachable) == set(net.live)
    assert set(result.unreachable) == faulty and len(faulty) > 100
    assert result.incomplete == [] and result.discovered == len(net.peers)
    assert result.rpcs < 10 * len(net.live) + len(faulty)  # go's crawler: 16 per peer
    assert result.duration < 10.0


def test_crawl_with_mostly_fresh_tables() -> None:
    net = SimNet(1000, seed=8, dead=0.2, stale=0.2)
    result = run_crawl(net, Crawler(net.live[:1], now=0.0, rpc_timeout=1.0))
    assert set(result.reachable) == set(net.live)
    assert set(result.unreachable) <= set(net.peers) - set(net.live)
    assert result.timeouts == len(result.unreachable)
