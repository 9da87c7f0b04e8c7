"""A sweep's exploration of one prefix (go-libp2p-kad-dht ``closestPeersToPrefix``): lookups
one after another until the prefix is covered by the closest peers they found. The rules
and their go sources: ``parsec.kad.sweep``'s module docstring; driven by its
``RegionProvide``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .crawl import KeyPreimages
from .keyspace import KEY_BITS, Key, PeerRef, key_of
from .lookup import Lookup
from .machine import Outcome, Request
from .sweep_regions import Coverage, Prefix, shortest_covered_prefix, under

MAX_EXPLORATION_PREFIX_SEARCHES = 64
"""go ``maxExplorationPrefixSearches``: lookups one exploration may make."""
MAX_CONSECUTIVE_NO_FRESH_PEERS = 2
"""go ``maxConsecutiveNoFreshPeers``."""
PREIMAGE_BITS = 16
"""Bits of a prefix an exploration target matches (go's preimage table: 15 + 1)."""

Seeds = Callable[[Key], Sequence[PeerRef]]
"""Where a lookup of a key starts: the node's k closest known peers to it (its routing table)."""


class Exploration:
    """``closestPeersToPrefix``: lookups one after another until ``prefix`` is covered (the
    rules: the module docstring). Driven by its ``RegionProvide``."""

    def __init__(self, prefix: Prefix, seeds: Seeds, preimages: KeyPreimages, order: Key, *, now: float,
                 k: int, lookup_options: dict) -> None:
        self.requested = self.prefix = self.next = prefix
        self.seeds, self.preimages, self.order, self.k = seeds, preimages, order, k
        self.lookup_options = lookup_options
        self.coverage = Coverage()
        self.peers: dict[PeerRef, None] = {}
        self.lookups = self.find_node = self.no_fresh = 0
        self.error: str | None = None
        self.done = False
        self._start(now)

    def _start(self, now: float) -> None:
        bits = min(len(self.next), PREIMAGE_BITS, self.preimages.max_bits)
        self.key_bytes = self.preimages.with_prefix(int(self.next[:bits], 2) if bits else 0, bits)
        target = key_of(self.key_bytes)
        self.lookup = Lookup(target, self.seeds(target), now=now, k=self.k, **self.lookup_options)
        self.lookups += 1

    def poll(self, now: float) -> list[Request]:
        out: list[Request] = []
        while not self.done:
            requests = self.lookup.poll(now)
            out += [Request(r.peer, r.kind, self.key_bytes) for r in requests]
            if not self.lookup.done:
                break
            self._lookup_ended(now)
        self.find_node += len(out)
        return out

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        if self.done or request.key != self.key_bytes:
            return  # an answer for an earlier lookup of this exploration: ignored
        self.lookup.on_outcome(Request(request.peer, request.kind), outcome, now)

    def next_deadline(self) -> float | None:
        return None if self.done else self.lookup.next_deadline()

    def _lookup_ended(self, now: float) -> None:
        target, closest = self.lookup.target, self.lookup.result.closest_known
        if not closest:
            self.error, self.done = "dht lookup did not return any peers", True
            return
        covered, found = shortest_covered_prefix(target, closest)
        while not found:  # every peer in the sibling of an empty zone: record it, look there
            self.coverage.add(covered)
            target ^= 1 << (KEY_BITS - len(covered))
            covered, found = shortest_covered_prefix(target, closest)
        before = len(self.peers)
        self.peers.update(dict.fromkeys(found))
        self.no_fresh = 0 if len(self.peers) > before else self.no_fresh + 1
        if self.no_fresh >= MAX_CONSECUTIVE_NO_FRESH_PEERS:
            return self._finish()
        self.coverage.add(covered)
        gaps = self.coverage.gaps(self.prefix, self.order)
        while not gaps and self.prefix and len(under(self.prefix, self.peers)) < self.k:
            self.prefix = self.prefix[:-1]
            gaps = self.coverage.gaps(self.prefix, self.order)
        if not gaps or self.lookups >= MAX_EXPLORATION_PREFIX_SEARCHES:
            return self._finish()
        self.next = gaps[0]
        self._start(now)

    def _finish(self) -> None:
        while self.prefix and len(under(self.prefix, self.peers)) < self.k:
            self.prefix = self.prefix[:-1]
        self.done = True
