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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from parsec.kad import (
    DELIVERED,
    KEY_BITS,
    CrawlResult,
    Crawler,
    Failure,
    Key,
    Lookup,
    LookupResult,
    Machine,
    NetworkSizeEstimator,
    Outcome,
    PeerRef,
    ProvideOperation,
    ProvideResult,
    Reply,
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
        sent: list[PeerRef] = []
        widest = {"walk": 0, "any": 0}

        def watch(requests: list[Request]) -> None:
            sent.extend(request.peer for request in requests)
            in_flight = len(lookup.in_flight)
            widest["any"] = max(widest["any"], in_flight)
            if lookup.phase == "walk":
                widest["walk"] = max(widest["walk"], in_flight)

        drive(self, lookup, lookup.target, None, now=now, max_steps=max_steps, watch=watch)
        return Trace(lookup.result, sent, widest["walk"], widest["any"])

    def answer(self, request: Request, key: Key, provider: PeerRef | None) -> Outcome:
        """What ``request`` for ``key`` brings back when it reaches its (not dead) peer:
        FIND_NODE / GET_PROVIDERS the peer's k closest (and the records it holds); an
        ADD_PROVIDER stores ``provider``'s record there; failing peers fail everything."""
        peer = self.peers[request.peer]
        if peer.behaviour == "failing":
            return Failure("connection refused")
        if request.kind == "add_provider":
            assert provider is not None
            peer.records.setdefault(key, []).append(provider)
            return DELIVERED
        providers = peer.records.get(key, []) if request.kind == "get_providers" else []
        return Reply(peer.table.closest(key, self.k), providers)


def drive(net: SimNet, machine: Machine, key: Key, provider: PeerRef | None, *, now: float = 0.0,
          max_steps: int = 100_000, watch: Callable[[list[Request]], None] | None = None) -> float:
    """The one driver loop of the test network: run ``machine`` (its requests for ``key``
    unless they carry key bytes) until done, each request answered after its peer's rtt
    (dead peers never answer); ``watch`` sees every poll's requests. The clock at the end."""
    clock = _Clock(now)
    for _ in range(max_steps):
        requests = machine.poll(clock.now)
        for request in requests:
            if net.peers[request.peer].behaviour != "dead":
                clock.at(net.peers[request.peer].rtt, request)
        if watch is not None:
            watch(requests)
        if machine.done:
            return clock.now
        request = clock.next_event(machine.next_deadline())
        if request is not None:
            target = key if request.key is None else key_of(request.key)
            machine.on_outcome(request, net.answer(request, target, provider), clock.now)
    raise AssertionError(f"{type(machine).__name__} not done after {max_steps} steps")


# ---------------------------------------------------------------- provide strategies and crawls


@dataclass
class ProvideTrace:
    """What the driver saw while running one provide operation."""

    result: ProvideResult
    requests: list[Request]
    pending_stores_at_return: int


@dataclass
class _Clock:
    """A virtual clock with a queue of future deliveries."""

    now: float
    arrivals: list[tuple[float, int, Request]] = field(default_factory=list)
    order: itertools.count = field(default_factory=itertools.count)

    def at(self, delay: float, request: Request) -> None:
        heapq.heappush(self.arrivals, (self.now + delay, next(self.order), request))

    def next_event(self, deadline: float | None) -> Request | None:
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
    requests: list[Request] = []
    pending_at_return = [-1]

    def watch(polled: list[Request]) -> None:
        requests.extend(polled)
        if op.returnable and pending_at_return[0] < 0:
            result = op.result
            pending_at_return[0] = len(result.store_targets) - result.stores_ok - result.stores_failed

    drive(net, op, op.key, provider, now=now, max_steps=max_steps, watch=watch)
    return ProvideTrace(op.result, requests, pending_at_return[0])


def run_crawl(
    net: SimNet, crawler: Crawler, *, now: float = 0.0, max_steps: int = 1_000_000
) -> CrawlResult:
    """Drive a crawl to the end: a FIND_NODE for key bytes B is answered with the peer's
    k closest to ``key_of(B)``; dead peers never answer, failing ones answer with an error."""
    drive(net, crawler, 0, None, now=now, max_steps=max_steps)
    return crawler.result


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
