"""The full-routing-table ("accelerated") client: a crawled table of the whole network.

Why: the ``fullrt`` fleet measures go-libp2p-kad-dht's ``FullRT`` client, which crawls every
reachable DHT server into a local table at start and every hour, then provides straight to
the k closest peers of that table — no lookup, so a provide is one round of stores instead
of a walk and then that round (the published figures: ``parsec.analysis.published``) — and
seeds lookups from it. It is not ready before its first crawl finished.

Here ``FullRoutingTable`` holds the crawled peer set (peers that answered the crawl; go keeps
exactly those), answers ``closest`` in O(log P) with a sorted key array instead of go's trie,
hands out ``Crawler``s (``crawl.py``) and applies their results, and builds
``DirectProvide`` operations with the provide machine interface of ``provide.py``.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from .crawl import Crawler, CrawlResult, KeyPreimages
from .keyspace import KEY_BITS, Key, PeerRef
from .provide import AnswerRule, ProvideOperation

FULLRT_CRAWL_INTERVAL = 3600.0
"""go ``FullRT.crawlerInterval``: one hour between crawl starts."""

FULLRT_WAIT_FRACTION = 0.3
"""go ``FullRT.waitFrac``: a direct provide may return after this share of stores succeeded
and a quiet period without new successes."""

FULLRT_QUIET_PERIOD = 0.5
"""go ``execOnMany``: the 500 ms ticker that ends a provide once a tick saw no new success."""

FULLRT_STORE_TIMEOUT = 5.0
"""go ``FullRT.timeoutPerOp``: 5 s per ADD_PROVIDER."""


class NotReady(RuntimeError):
    """The full routing table has no completed crawl yet: it cannot pick peers."""


def closest_in_sorted(sorted_keys: Sequence[Key], target: Key, n: int) -> list[int]:
    """Indices of the ``n`` keys of ``sorted_keys`` closest to ``target`` by XOR, closest
    first, in O(log(P) * log(256) + n log n).

    Why it works: the keys sharing the top ``p`` bits with ``target`` form one contiguous
    run of a sorted array, and each of them is closer to ``target`` than any key outside
    it. So find (by binary search on ``p``) the longest shared prefix whose run still holds
    ``n`` keys; the ``n`` closest are all inside that run, which holds about 2n keys.
    """
    if n <= 0:
        return []

    def run(prefix_len: int) -> tuple[int, int]:
        shift = KEY_BITS - prefix_len
        low = (target >> shift) << shift
        start = bisect.bisect_left(sorted_keys, low)
        return start, bisect.bisect_left(sorted_keys, low + (1 << shift), start)

    shortest, longest = 0, KEY_BITS
    while shortest < longest:  # the run size shrinks as the prefix grows
        middle = (shortest + longest + 1) // 2
        start, end = run(middle)
        if end - start >= n:
            shortest = middle
        else:
            longest = middle - 1
    start, end = run(shortest)
    return heapq.nsmallest(n, range(start, end), key=lambda i: sorted_keys[i] ^ target)


class FullRoutingTable:
    """Every reachable peer of the last completed crawl, and the strategies built on it.

    Life cycle (times are the driver's clock)::

        table = FullRoutingTable()
        crawler = table.start_crawl(bootstrap_peers, now=clock())   # run it to the end
        table.finish_crawl(crawler.result)                          # now ready
        ... table.needs_refresh(clock()) -> start_crawl(...) again (seeded by the table)

    Until the first crawl that reached at least one peer finished, every peer query raises
    ``NotReady``. During a refresh the previous table keeps serving (go swaps the table
    when the new crawl completes); a crawl that reached nobody leaves the table unchanged.
    """

    def __init__(
        self,
        k: int = 20,
        refresh_interval: float = FULLRT_CRAWL_INTERVAL,
        self_peer: PeerRef | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not refresh_interval > 0:
            raise ValueError(f"refresh_interval must be > 0, got {refresh_interval}")
        self.k = k
        self.refresh_interval = refresh_interval
        self.self_peer = self_peer
        self._peers: list[PeerRef] = []  # sorted by key
        self._keys: list[Key] = []
        self._ready = False
        self._crawling = False
        self._last_crawl: CrawlResult | None = None
        self._preimages: KeyPreimages | None = None

    # ------------------------------------------------------------- crawling

    def start_crawl(self, seeds: Iterable[PeerRef], *, now: float, **options: Any) -> Crawler:
        """A crawler seeded with ``seeds`` plus the current table (as go: bootstrap peers
        and the last crawl's peers). ``options`` go to ``Crawler`` (concurrency, timeout,
        rng, preimages...)."""
        self._crawling = True
        if self._preimages is None:  # kept across crawls: the prefix search is paid once
            self._preimages = KeyPreimages(rng=options.get("rng"))
        options.setdefault("preimages", self._preimages)
        options.setdefault("k", self.k)
        options.setdefault("self_peer", self.self_peer)
        return Crawler([*seeds, *self._peers], now=now, **options)

    def finish_crawl(self, result: CrawlResult) -> None:
        """Adopt the peers that answered ``result``'s crawl as the new table."""
        self._crawling = False
        self._last_crawl = result
        if not result.reachable:
            return
        peers = sorted(set(result.reachable), key=lambda peer: peer.key)
        if self.self_peer is not None:
            peers = [peer for peer in peers if peer.peer_id != self.self_peer.peer_id]
        self._peers = peers
        self._keys = [peer.key for peer in peers]
        self._ready = bool(peers)

    def needs_refresh(self, now: float) -> bool:
        """True when no crawl is running and none ever started, or the last one started
        ``refresh_interval`` ago or more (go's ticker: start to start)."""
        if self._crawling:
            return False
        if self._last_crawl is None:
            return True
        return now - self._last_crawl.started_at >= self.refresh_interval

    # ------------------------------------------------------------- queries

    @property
    def ready(self) -> bool:
        """A crawl completed and reached at least one peer."""
        return self._ready

    @property
    def crawling(self) -> bool:
        return self._crawling

    @property
    def last_crawl(self) -> CrawlResult | None:
        return self._last_crawl

    def closest(self, key: Key, n: int) -> list[PeerRef]:
        """The ``n`` peers of the table closest to ``key``, closest first."""
        self._require_ready()
        return [self._peers[i] for i in closest_in_sorted(self._keys, key, n)]

    def provide_targets(self, key: Key) -> list[PeerRef]:
        """The k closest peers: where a direct provide stores the record."""
        return self.closest(key, self.k)

    def lookup_seeds(self, key: Key) -> list[PeerRef]:
        """Seeds for a lookup of ``key`` (go's FullRT queries these k directly; a
        ``Lookup`` seeded with them converges after asking them)."""
        return self.closest(key, self.k)

    def provide(self, key: Key, *, now: float, **options: Any) -> DirectProvide:
        """A ``DirectProvide`` of ``key`` to the k closest peers of the table."""
        return DirectProvide(key, self.provide_targets(key), now=now, **options)

    def peers(self) -> list[PeerRef]:
        return list(self._peers)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        if not isinstance(peer, PeerRef):
            return False
        index = bisect.bisect_left(self._keys, peer.key)
        return index < len(self._peers) and self._peers[index] == peer

    def __repr__(self) -> str:
        return f"FullRoutingTable(peers={len(self._peers)}, ready={self._ready})"

    def _require_ready(self) -> None:
        if not self._ready:
            raise NotReady("the full routing table is not ready: no crawl has completed yet")


class DirectProvide(ProvideOperation):
    """ADD_PROVIDER straight to ``targets``, no lookup (go ``FullRT.Provide``): no walk, the
    stores decided up front, answered by ``QuietPeriod``. All stores go out on the first
    ``poll``."""

    def __init__(
        self,
        key: Key,
        targets: Iterable[PeerRef],
        *,
        now: float,
        rpc_timeout: float = FULLRT_STORE_TIMEOUT,
        wait_fraction: float = FULLRT_WAIT_FRACTION,
        quiet_period: float = FULLRT_QUIET_PERIOD,
    ) -> None:
        self.quiet_period = quiet_period
        super().__init__(key, now=now, rpc_timeout=rpc_timeout, strategy="direct",
                         answer=QuietPeriod(wait_fraction, quiet_period), targets=targets)


class QuietPeriod(AnswerRule):
    """go's ``execOnMany`` with sloppy exit: once ``wait_fraction`` of the targets succeeded,
    a ``quiet_period`` ticker starts and the caller is answered at the first tick that saw
    no new success; or as soon as ``2 * successes + failures >= len(targets)`` (checked
    after every store; go checks it on successes only); or when all settled. go then
    cancels the remaining stores; here they keep running until they settle (call ``stop``
    to cancel them)."""

    def __init__(self, wait_fraction: float, quiet_period: float) -> None:
        if not 0.0 <= wait_fraction <= 1.0:
            raise ValueError(f"wait_fraction must be within [0, 1], got {wait_fraction}")
        if not quiet_period > 0:
            raise ValueError(f"quiet_period must be > 0, got {quiet_period}")
        self.wait_fraction = wait_fraction
        self.quiet_period = quiet_period
        self._next_tick: float | None = None
        self._successes_at_last_tick = 0
        self._quiet_tick_at: float | None = None  # the tick that saw no new success

    def advance(self, op: ProvideOperation, now: float) -> None:
        """Run the ticks due by ``now``; no event happened between them."""
        while self._next_tick is not None and self._next_tick <= now:
            successes = op.stores.successes
            if successes > self._successes_at_last_tick:
                self._successes_at_last_tick = successes
                self._next_tick += self.quiet_period
            else:
                self._quiet_tick_at = self._next_tick
                self._next_tick = None

    def next_deadline(self, op: ProvideOperation) -> float | None:
        return None if op.returnable else self._next_tick

    def answer_at(self, op: ProvideOperation) -> float | None:
        stores = op.stores
        successes, completions = stores.successes, stores.completions
        ticking = self._next_tick is not None or self._quiet_tick_at is not None
        if not ticking and successes >= max(1, int(len(stores) * self.wait_fraction)):  # go starts it on a success
            self._next_tick = op.now + self.quiet_period
            self._successes_at_last_tick = successes
        if self._quiet_tick_at is not None:
            return self._quiet_tick_at
        if successes + completions >= len(stores) or stores.pending == 0:
            return op.now
        return None
