"""A tiny simulated DHT for the sans-IO lookup, provide strategies and crawler: virtual clock.

Every peer holds a standard k-bucket table filled from the whole peer set and answers
FIND_NODE / GET_PROVIDERS with its k closest peers to the target (plus provider records it
stores). Each peer has a fixed round-trip latency and a behaviour: ``ok``, ``dead`` (never
answers, so the request times out) or ``failing`` (answers every request with an error).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Literal

from parsec.kad import (
    KEY_BITS,
    CrawlRequest,
    CrawlResult,
    Crawler,
    Key,
    Lookup,
    LookupResult,
    NetworkSizeEstimator,
    PeerRef,
    ProvideOperation,
    ProvideResult,
    Request,
    RoutingTable,
    bucket_fill_for,
    closest_peers,
    key_of,
)

Behaviour = Literal["ok", "dead", "failing"]


@dataclass
class SimPeer:
    ref: PeerRef
    table: RoutingTable
    rtt: float
    behaviour: Behaviour
    records: dict[Key, list[PeerRef]] = field(default_factory=dict)


@dataclass
class Trace:
    """What the driver saw while running one lookup."""

    result: LookupResult
    sent: list[PeerRef]
    max_in_flight_walk: int
    max_in_flight: int


class SimNet:
    """``n`` peers with random ids (seeded). ``dead`` and ``failing`` are the fractions of
    faulty peers; ``stale`` is the chance that a given table still lists a given faulty peer
    (1.0: every table lists them all, as if they failed just now; real nodes drop peers that
    stop answering, so live peers' tables mostly name live peers)."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        k: int = 20,
        rtt: tuple[float, float] = (0.02, 0.3),
        dead: float = 0.0,
        failing: float = 0.0,
        stale: float = 1.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.k = k
        refs = [PeerRef.from_id(b"\x12\x20" + self.rng.randbytes(32)) for _ in range(n)]
        behaviours = {ref: self._draw(dead, failing) for ref in refs}
        live = [ref for ref in refs if behaviours[ref] == "ok"]
        faulty = [ref for ref in refs if behaviours[ref] != "ok"]
        self.peers: dict[PeerRef, SimPeer] = {}
        for ref in refs:
            table = RoutingTable(ref, k)
            table.fill_from(live + [f for f in faulty if self.rng.random() < stale])
            self.peers[ref] = SimPeer(ref, table, self.rng.uniform(*rtt), behaviours[ref])

    def _draw(self, dead: float, failing: float) -> Behaviour:
        roll = self.rng.random()
        return "dead" if roll < dead else "failing" if roll < dead + failing else "ok"

    @property
    def live(self) -> list[PeerRef]:
        return [ref for ref, peer in self.peers.items() if peer.behaviour == "ok"]

    def random_live_peer(self) -> SimPeer:
        return self.peers[self.rng.choice(self.live)]

    def true_closest(
        self, target: Key, n: int, *, live_only: bool = False, exclude: PeerRef | None = None
    ) -> list[PeerRef]:
        pool = self.live if live_only else list(self.peers)
        return closest_peers((p for p in pool if p != exclude), target, n)

    def provide(self, key: Key, provider: PeerRef) -> list[PeerRef]:
        """Store a provider record on the k live peers truly closest to ``key``."""
        holders = self.true_closest(key, self.k, live_only=True)
        for holder in holders:
            self.peers[holder].records.setdefault(key, []).append(provider)
        return holders

    def start_lookup(self, origin: SimPeer, target: Key, *, now: float = 0.0, **options) -> Lookup:
        """A lookup seeded as go seeds one: the k closest peers of the origin's table."""
        seeds = origin.table.closest(target, self.k)
        return Lookup(target, seeds, now=now, k=self.k, self_peer=origin.ref, **options)

    def run(self, lookup: Lookup, *, now: float = 0.0, max_steps: int = 100_000) -> Trace:
        """Drive ``lookup`` to the end on the virtual clock; fail loudly if it stalls."""
        arrivals: list[tuple[float, int, PeerRef]] = []
        order = itertools.count()
        sent: list[PeerRef] = []
        max_walk = max_any = 0
        for _ in range(max_steps):
            for ref in lookup.poll(now):
                sent.append(ref)
                peer = self.peers[ref]
                if peer.behaviour != "dead":
                    heapq.heappush(arrivals, (now + peer.rtt, next(order), ref))
            in_flight = len(lookup.in_flight)
            max_any = max(max_any, in_flight)
            if lookup.phase == "walk":
                max_walk = max(max_walk, in_flight)
            if lookup.done:
                return Trace(lookup.result, sent, max_walk, max_any)
            next_arrival = arrivals[0][0] if arrivals else math.inf
            deadline = lookup.next_deadline()
            now = min(next_arrival, math.inf if deadline is None else deadline)
            assert now < math.inf, "lookup stalled: nothing in flight, not done"
            if next_arrival <= now:
                _, _, ref = heapq.heappop(arrivals)
                self._deliver(lookup, self.peers[ref], now)
        raise AssertionError(f"lookup not done after {max_steps} steps")

    def _deliver(self, lookup: Lookup, peer: SimPeer, now: float) -> None:
        if peer.behaviour == "failing":
            lookup.on_failure(peer.ref, now, "connection refused")
            return
        closer = peer.table.closest(lookup.target, self.k)
        providers = peer.records.get(lookup.target, []) if lookup.goal == "providers" else []
        lookup.on_response(peer.ref, closer, now, providers)


# ---------------------------------------------------------------- provide strategies and crawls


@dataclass
class ProvideTrace:
    """What the driver saw while running one provide operation."""

    result: ProvideResult
    requests: list[Request]
    pending_stores_at_return: int


@dataclass
class _Clock:
    """A virtual clock with a queue of future deliveries, shared by the drivers below."""

    now: float
    arrivals: list[tuple[float, int, object]] = field(default_factory=list)
    order: itertools.count = field(default_factory=itertools.count)

    def at(self, delay: float, event: object) -> None:
        heapq.heappush(self.arrivals, (self.now + delay, next(self.order), event))

    def next_event(self, deadline: float | None) -> object | None:
        """Move to the next arrival or to ``deadline``, whichever comes first; the arrival
        (or None when the deadline came first)."""
        next_arrival = self.arrivals[0][0] if self.arrivals else math.inf
        wake = min(next_arrival, math.inf if deadline is None else deadline)
        assert wake < math.inf, "stalled: nothing in flight, not done"
        self.now = wake
        if next_arrival <= wake:
            return heapq.heappop(self.arrivals)[2]
        return None


def run_provide(
    net: SimNet,
    op: ProvideOperation,
    provider: PeerRef,
    *,
    now: float = 0.0,
    max_steps: int = 100_000,
) -> ProvideTrace:
    """Drive a provide operation to ``done``: FIND_NODE answers as ``SimNet.run`` gives
    them; an ADD_PROVIDER to a live peer stores ``provider``'s record there and succeeds
    after the peer's rtt; failing peers fail it; dead peers never answer (timeout)."""
    clock = _Clock(now)
    requests: list[Request] = []
    pending_at_return = -1
    for _ in range(max_steps):
        for request in op.poll(clock.now):
            requests.append(request)
            peer = net.peers[request.peer]
            if peer.behaviour != "dead":
                clock.at(peer.rtt, request)
        if op.returnable and pending_at_return < 0:
            result = op.result
            pending_at_return = len(result.store_targets) - result.stores_ok - result.stores_failed
        if op.done:
            return ProvideTrace(op.result, requests, pending_at_return)
        request = clock.next_event(op.next_deadline())
        if isinstance(request, Request):
            _answer_provide(net, op, request, provider, clock.now)
    raise AssertionError(f"provide not done after {max_steps} steps")


def _answer_provide(
    net: SimNet, op: ProvideOperation, request: Request, provider: PeerRef, now: float
) -> None:
    peer = net.peers[request.peer]
    failing = peer.behaviour == "failing"
    if request.kind == "add_provider":
        if not failing:
            peer.records.setdefault(op.key, []).append(provider)
        op.on_store_done(peer.ref, not failing, now, "connection refused" if failing else "")
    elif failing:
        op.on_failure(peer.ref, now, "connection refused")
    else:
        op.on_response(peer.ref, peer.table.closest(op.key, net.k), now)


def run_crawl(
    net: SimNet, crawler: Crawler, *, now: float = 0.0, max_steps: int = 1_000_000
) -> CrawlResult:
    """Drive a crawl to the end: a FIND_NODE for key bytes B is answered with the peer's
    k closest to ``key_of(B)``; dead peers never answer, failing ones answer with an error."""
    clock = _Clock(now)
    for _ in range(max_steps):
        for request in crawler.poll(clock.now):
            peer = net.peers[request.peer]
            if peer.behaviour != "dead":
                clock.at(peer.rtt, request)
        if crawler.done:
            return crawler.result
        request = clock.next_event(crawler.next_deadline())
        if isinstance(request, CrawlRequest):
            peer = net.peers[request.peer]
            if peer.behaviour == "failing":
                crawler.on_failure(peer.ref, request.key_bytes, clock.now, "connection refused")
            else:
                closer = peer.table.closest(key_of(request.key_bytes), net.k)
                crawler.on_response(peer.ref, request.key_bytes, closer, clock.now)
    raise AssertionError(f"crawl not done after {max_steps} steps")


def trained_estimator(
    net: SimNet, *, lookups: int = 40, seed: int = 21, rpc_timeout: float = 10.0
) -> tuple[NetworkSizeEstimator, float, list[LookupResult]]:
    """A size estimator fed by ``lookups`` completed lookups from random live peers to
    random keys, as a node's own lookups would feed it: (estimator, time after the last,
    the lookups' results)."""
    rng = random.Random(seed)
    estimator, now, results = NetworkSizeEstimator(), 0.0, []
    for _ in range(lookups):
        origin = net.peers[rng.choice(net.live)]
        target = rng.getrandbits(KEY_BITS)
        result = net.run(net.start_lookup(origin, target, now=now, rpc_timeout=rpc_timeout), now=now).result
        now = result.finished_at
        estimator.track_lookup(result, now, bucket_fill_for(origin.table, target, result.closest))
        results.append(result)
    return estimator, now, results
