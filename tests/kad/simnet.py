"""A tiny simulated DHT to exercise the sans-IO lookup: virtual clock, no sockets.

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

from parsec.kad import Key, Lookup, LookupResult, PeerRef, RoutingTable, closest_peers

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
