"""The sweeping provider (go-libp2p-kad-dht ``provider/``, Kubo ≥ 0.39's default) as sans-IO
state machines: one region's (re)provide here, a prefix's exploration in ``sweep_explore``,
the schedule in ``sweep_schedule``, the keyspace arithmetic in ``sweep_regions``.

Instead of one lookup per key, the node cuts the keyspace into prefix regions holding at
least k peers, discovers each region's peers once and stores every key of the region on its
k closest of them, one connection per peer. The rules, each with its go source (files under
``provider/`` of go-libp2p-kad-dht, read at 2a10abd; defaults also in kubo ``docs/config.md``
``Provide.DHT.*``):

* **Regions** — a region is a prefix whose subtree holds ≥ ``K`` = 20 peers
  (``replicationFactor`` = ``amino.DefaultBucketSize``); a prefix is split only while both
  halves hold ≥ 20 of the peers found (``keyspace.RegionsFromPeers``, ``extractMinimalRegions``).
  Planning: before any exploration the node schedules prefixes of one length, the average
  common prefix length among the closest peers of ``APPROX_PREFIX_LEN_LOOKUPS`` = 4 lookups
  of random keys (``approxPrefixLen``, ``approxPrefixLenGCPCount``; ``prefix_len_from_lookups``
  in ``sweep_schedule``); a key's prefix is the scheduled prefix it lies under, else its first
  that-many bits (``groupAndScheduleKeysByPrefix``). Each exploration then replaces the
  scheduled prefix by the regions it found (``reschedulePrefix``, ``unscheduleSubsumedPrefixesNoLock``).
* **Exploration** of a prefix (``closestPeersToPrefix``): lookups one after another, each for
  a key under the next uncovered part of the prefix; each lookup's closest peers fully cover
  the widest prefix of its target whose every peer they include (``keyspace.ShortestCoveredPrefix``:
  one bit deeper than the farthest peer's common prefix with the target; when all share it,
  that zone is empty and the sibling is tried); it ends when the prefix has no gap left and
  ≥ 20 found peers under it (else the prefix is widened by one bit and its new gaps explored),
  after ``MAX_EXPLORATION_PREFIX_SEARCHES`` = 64 lookups (``maxExplorationPrefixSearches``), or
  after ``MAX_CONSECUTIVE_NO_FRESH_PEERS`` = 2 lookups in a row that found no new peer
  (``maxConsecutiveNoFreshPeers``); finally the covered prefix is widened until ≥ 20 found
  peers lie under it. Every key of the covered prefix is assigned to the region it lies in, or
  to the region sharing the most bits with it (``keyspace.AssignKeysToRegions``).
* **Batched stores** (``provideRegions``, ``sendProviderRecords``, ``provideKeysToPeer``): per
  region, every key goes to its 20 closest region peers (``keyspace.AllocateToKClosest``);
  each peer gets all its keys over one connection, one ADD_PROVIDER per key, one after another,
  each with ``SEND_PROVIDER_RECORD_TIMEOUT`` = 10 s (``DefaultSendProviderRecordTimeout``);
  at most ``MAX_PROVIDE_CONNS_PER_WORKER`` = 20 peers at once (``maxProvideConnsPerWorker``);
  a peer is given up after more than ``MAX_CONSECUTIVE_PROVIDE_FAILURES`` = 2 failures in a
  row (``maxConsecutiveProvideFailuresAllowed``) and counts as failed then or when every key
  sent to it failed. Regions are stored one after another.
* **The 20 % mark** — a region is provided unless every peer or more than 80 % of its peers
  failed (``minimalRegionReachablePeersRatio`` = 0.2).
* **Few keys** — a prefix with ≤ ``INDIVIDUAL_PROVIDE_THRESHOLD`` = 2 keys is not explored:
  each key gets a lookup of its own and its closest peers the record (``individualProvideThreshold``,
  ``individualProvide``, ``vanillaProvide``); here that is ``ClassicProvide``.
* The schedule (even spread over ``REPROVIDE_INTERVAL`` = 22 h, burst queue, workers): see
  ``sweep_schedule``.

Differences from go (on purpose, or not yet):

* Exploration lookup targets: go asks ``GetClosestPeers`` for a peer id from go-libp2p-kbucket's
  preimage table (``kb.GenRandPeerIDWithCPL(FirstFullKeyWithPrefix(prefix, order), 15)``: the
  prefix's first 15 bits, then the flipped 16th bit of prefix-then-own-key); here the target is
  key bytes whose key starts with the prefix's first ``min(len, PREIMAGE_BITS = 16)`` bits
  (``KeyPreimages.with_prefix``), the rest whatever the hash gave. Both lie under the prefix
  for every prefix under 16 bits (networks below ~1.3M peers); and the covered prefix is
  computed against the lookup's own target (go uses the prefix-then-own-key full key, which
  agrees with the target only on those first bits).
* A lookup is the engine's ``Lookup`` ("closest", followup once) and its peers are
  ``closest_known`` (as ``ClassicProvide``), go's ``GetClosestPeers``.
* Stores go to peers in the region's order (go: map order, random); regions one after another
  as go. Counts per (peer, key) are exact here (go estimates holders from failures).
* Not modelled: the local provider store (``addLocalRecord``), self addresses, connectivity
  checks and the offline state (``internal/connectivity``), persisting the schedule, the
  reprovide history and the provide queue (``ResumeCycle``), the keystore refresh, and a
  burst provide's taking of queued keys of the covered prefix (``DequeueMatching``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .constants import ALPHA, BETA, K, RPC_TIMEOUT
from .crawl import KeyPreimages
from .keyspace import Key, PeerRef, key_of
from .machine import Failure, Outcome, Request
from .provide import ClassicProvide
from .sweep_explore import (
    MAX_CONSECUTIVE_NO_FRESH_PEERS, MAX_EXPLORATION_PREFIX_SEARCHES, PREIMAGE_BITS, Exploration, Seeds,
)
from .sweep_regions import (
    KeyStore, Prefix, Region, allocate_to_k_closest, assign_keys_to_regions, regions_from_peers,
    shortest_covered_prefix,
)

REPROVIDE_INTERVAL = 22 * 3600.0
"""go ``amino.DefaultReprovideInterval``; kubo ``Provide.DHT.Interval`` 22 h."""
MAX_REPROVIDE_DELAY = 3600.0
"""go ``DefaultMaxReprovideDelay``: a region reprovided is due again at most this late."""
MAX_PREFIX_SIZE = 24
"""go ``maxPrefixSize``: prefixes beyond 24 bits share the time slot of their 24-bit head."""
INDIVIDUAL_PROVIDE_THRESHOLD = 2
"""go ``individualProvideThreshold``: ≤ 2 keys → one lookup per key, no exploration."""
MAX_CONSECUTIVE_PROVIDE_FAILURES = 2
"""go ``maxConsecutiveProvideFailuresAllowed``: more failures in a row give a peer up."""
MIN_REGION_REACHABLE_RATIO = 0.2
"""go ``minimalRegionReachablePeersRatio``."""
SEND_PROVIDER_RECORD_TIMEOUT = 10.0
"""go ``DefaultSendProviderRecordTimeout``; kubo ``Provide.DHT.SendProviderRecordTimeout``."""
MAX_PROVIDE_CONNS_PER_WORKER = 20
"""go ``maxProvideConnsPerWorker`` default; kubo ``Provide.DHT.MaxProvideConnsPerWorker``."""

JobKind = Literal["periodic", "burst"]


def region_reached(peers: int, failed: int) -> bool:
    """go's 20 % mark: not every peer failed and at most 80 % did."""
    return peers > 0 and failed < peers and failed <= int(peers * (1 - MIN_REGION_REACHABLE_RATIO))


@dataclass(frozen=True, slots=True)
class RegionReport:
    """One region's stores: its peers, keys, peers that took records, the 20 % mark."""

    prefix: Prefix
    peers: int
    keys: int
    reachable: int
    reached: bool


@dataclass(frozen=True, slots=True)
class RegionResult:
    """What one (re)provide of a prefix did and cost. ``covered``: the prefix the
    exploration covered (None without one); ``regions``: the regions stored to (for the
    per-key fallback, one per key: the prefix its lookup covered); ``holders``: per key,
    the peers whose ADD_PROVIDER succeeded; ``keys_reached``: keys whose region reached the
    20 % mark. ``find_node`` counts lookup requests, ``add_provider`` stores sent;
    ``stores_failed`` includes ``store_timeouts`` (as ``ProvideResult``)."""

    prefix: Prefix
    kind: JobKind
    covered: Prefix | None
    individual: bool
    keys: int
    regions: tuple[RegionReport, ...]
    lookups: int
    find_node: int
    add_provider: int
    stores_ok: int
    stores_failed: int
    store_timeouts: int
    peers_reached: int
    keys_reached: int
    holders: dict[Key, int]
    error: str | None
    started_at: float
    finished_at: float | None
    store_errors: dict[str, int] = field(default_factory=dict)

    @property
    def wall(self) -> float | None:
        """Driver-clock seconds from start to the last store settled."""
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def share_reached(self) -> float:
        return self.keys_reached / self.keys if self.keys else 0.0

    @property
    def messages(self) -> int:
        return self.find_node + self.add_provider


@dataclass(slots=True)
class _PeerJob:
    """The keys one peer is to hold, sent one after another over its connection."""

    peer: PeerRef
    keys: list[Key]
    sent: int = 0
    errors: int = 0
    streak: int = 0
    failed: bool = False


class RegionProvide:
    """A ``Machine``: (re)provide the keys of one prefix — explore it and store each of its
    keys on its 20 closest region peers in batches, or one ``ClassicProvide`` per key when
    it holds ≤ 2 keys. ``keystore`` holds the node's keys (a reprovide takes every key of
    the covered prefix from it); ``batch``: a burst provide's keys instead. Every request
    carries its key bytes. The rules: the module docstring."""

    def __init__(self, prefix: Prefix, keystore: KeyStore, seeds: Seeds, *, now: float, order: Key,
                 preimages: KeyPreimages, kind: JobKind = "periodic", batch: Sequence[Key] | None = None,
                 self_peer: PeerRef | None = None, k: int = K, alpha: int = ALPHA, beta: int = BETA,
                 rpc_timeout: float = RPC_TIMEOUT, store_timeout: float = SEND_PROVIDER_RECORD_TIMEOUT,
                 conns: int = MAX_PROVIDE_CONNS_PER_WORKER) -> None:
        self.prefix, self.keystore, self.seeds, self.order, self.kind = prefix, keystore, seeds, order, kind
        self.k, self.conns, self.store_timeout, self.now = k, conns, store_timeout, now
        self.lookup_options = dict(alpha=alpha, beta=beta, rpc_timeout=rpc_timeout, self_peer=self_peer)
        self._batch = None if batch is None else sorted(set(batch))
        self._started_at = now
        self._finished_at: float | None = None
        self.error: str | None = None
        self.exploration: Exploration | None = None
        self.individual: dict[bytes, ClassicProvide] = {}
        self.covered: Prefix | None = None
        self.keys: list[Key] = []
        self._regions: list[tuple[Region, list[Key]]] = []  # still to store, in order
        self._reports: list[RegionReport] = []
        self._waiting: list[_PeerJob] = []
        self._active: dict[PeerRef, _PeerJob] = {}
        self._ready: list[_PeerJob] = []  # active, nothing in flight, keys left
        self._in_flight: dict[Request, tuple[_PeerJob, float]] = {}
        self._expired: set[Request] = set()
        self._region: tuple[Region, list[Key], list[_PeerJob]] | None = None
        self.holders: Counter[Key] = Counter()
        self.stores = Counter()  # sent, ok, failed, timeouts
        self._store_errors: Counter[str] = Counter()
        self._reached_peers: set[PeerRef] = set()
        self._keys_reached = 0
        count = len(self._batch) if self._batch is not None else keystore.count_up_to(
            prefix, INDIVIDUAL_PROVIDE_THRESHOLD + 1)
        if count == 0:
            self._finished_at = now
        elif count <= INDIVIDUAL_PROVIDE_THRESHOLD:
            self.keys = self._batch if self._batch is not None else keystore.under(prefix)
            for key in self.keys:
                mh = keystore.bytes_of(key)
                self.individual[mh] = ClassicProvide(key, seeds(key), now=now, k=k, **self.lookup_options)
        else:
            self.exploration = Exploration(prefix, seeds, preimages, order, now=now, k=k,
                                           lookup_options=self.lookup_options)

    # ------------------------------------------------------------- Machine

    def poll(self, now: float) -> list[Request]:
        self._advance(now)
        out: list[Request] = []
        if self.done:
            return out
        if self.individual:
            for mh, op in self.individual.items():
                out += [Request(r.peer, r.kind, mh) for r in op.poll(now)]
        elif self.exploration is not None and not self.exploration.done:
            out += self.exploration.poll(now)
            if self.exploration.done:
                self._explored()
        out += self._send_stores(now)
        self._check_done(now)
        return out

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        self._advance(now)
        if self.done:
            return
        if self.individual:
            op = self.individual.get(request.key) if request.key is not None else None
            if op is None:
                raise ValueError(f"no request of this provide: {request!r}")
            op.on_outcome(Request(request.peer, request.kind), outcome, now)
        elif request.kind != "add_provider":
            if self.exploration is not None:
                self.exploration.on_outcome(request, outcome, now)
        elif request in self._in_flight:
            job, _deadline = self._in_flight.pop(request)
            self._store_settled(job, request.key, outcome, now)
        elif request not in self._expired:
            raise ValueError(f"no ADD_PROVIDER in flight: {request!r}")
        self._check_done(now)

    def next_deadline(self) -> float | None:
        deadlines = [d for _, d in self._in_flight.values()]
        if self.individual:
            deadlines += [d for op in self.individual.values() if (d := op.next_deadline()) is not None]
        elif self.exploration is not None and (d := self.exploration.next_deadline()) is not None:
            deadlines.append(d)
        return min(deadlines, default=None)

    @property
    def done(self) -> bool:
        return self._finished_at is not None

    @property
    def returnable(self) -> bool:
        return self.done

    @property
    def result(self) -> RegionResult:
        exploration = self.exploration
        find_node = exploration.find_node if exploration is not None else 0
        lookups = exploration.lookups if exploration is not None else 0
        reports = list(self._reports)
        stores = Counter(self.stores)
        errors = Counter(self._store_errors)
        reached_peers = set(self._reached_peers)
        keys_reached = self._keys_reached
        for mh, op in self.individual.items():
            r = op.result
            lookups += 1
            find_node += r.rpcs.get("find_node", 0)
            stores["sent"] += r.rpcs.get("add_provider", 0)
            stores["ok"] += r.stores_ok
            stores["failed"] += r.stores_failed
            stores["timeouts"] += r.store_timeouts
            errors.update(r.store_errors)
            reached_peers.update(r.holders)
            targets = len(r.store_targets)
            reached = op.done and region_reached(targets, targets - r.stores_ok)
            keys_reached += reached
            covered = shortest_covered_prefix(r.key, r.store_targets)[0] if op.done else self.prefix
            reports.append(RegionReport(covered, targets, 1, r.stores_ok, reached))
        holders = dict(self.holders)
        for op in self.individual.values():
            holders[op.key] = op.result.stores_ok
        return RegionResult(
            prefix=self.prefix, kind=self.kind, covered=self.covered, individual=bool(self.individual),
            keys=len(self.keys), regions=tuple(reports), lookups=lookups, find_node=find_node,
            add_provider=stores["sent"], stores_ok=stores["ok"], stores_failed=stores["failed"],
            store_timeouts=stores["timeouts"], peers_reached=len(reached_peers), keys_reached=keys_reached,
            holders={key: holders.get(key, 0) for key in self.keys}, error=self.error,
            started_at=self._started_at, finished_at=self._finished_at, store_errors=dict(errors),
        )

    def __repr__(self) -> str:
        return f"RegionProvide({self.prefix!r}, {self.kind}, keys={len(self.keys)}, done={self.done})"

    # ------------------------------------------------------------- internals

    def _advance(self, now: float) -> None:
        if now < self.now:
            raise ValueError(f"time went backwards: {now} < {self.now}")
        self.now = now
        expired = [(request, job) for request, (job, deadline) in self._in_flight.items() if deadline <= now]
        for request, job in expired:
            del self._in_flight[request]
            self._expired.add(request)
            self.stores["timeouts"] += 1
            self._store_settled(job, request.key, Failure("timeout"), now, timed_out=True)

    def _explored(self) -> None:
        exploration = self.exploration
        assert exploration is not None
        if exploration.error is not None:
            self.error = exploration.error
            self.keys = list(self._batch) if self._batch is not None else []
            return
        self.covered = exploration.prefix
        self.keys = self._batch if self._batch is not None else self.keystore.under(self.covered)
        regions = regions_from_peers(exploration.peers, self.covered, self.k, self.order)
        if not regions:
            self.error = f"no peers found when exploring prefix {self.prefix!r}"
            return
        assigned = assign_keys_to_regions(regions, self.keys)
        self._regions = [(r, assigned[r.prefix]) for r in regions if assigned[r.prefix]]
        self._next_region()

    def _next_region(self) -> None:
        self._region = None
        if not self._regions:
            return
        region, keys = self._regions.pop(0)
        jobs = [_PeerJob(peer, peer_keys) for peer, peer_keys in
                allocate_to_k_closest(keys, region.peers, self.k).items()]
        self._region = (region, keys, jobs)
        self._waiting = list(jobs)

    def _send_stores(self, now: float) -> list[Request]:
        out = [self._send(job, now) for job in self._ready]
        self._ready = []
        while self._waiting and len(self._active) < self.conns:
            job = self._waiting.pop(0)
            self._active[job.peer] = job
            out.append(self._send(job, now))
        return out

    def _send(self, job: _PeerJob, now: float) -> Request:
        request = Request(job.peer, "add_provider", self.keystore.bytes_of(job.keys[job.sent]))
        job.sent += 1
        self.stores["sent"] += 1
        self._in_flight[request] = (job, now + self.store_timeout)
        return request

    def _store_settled(self, job: _PeerJob, key_bytes: bytes | None, outcome: Outcome, now: float,
                       timed_out: bool = False) -> None:
        assert key_bytes is not None
        if isinstance(outcome, Failure):
            self.stores["failed"] += 1  # timeouts included, as ``ProvideResult.stores_failed``
            if not timed_out:
                self._store_errors[outcome.error] += 1
            job.errors += 1
            job.streak += 1
            last = job.sent == len(job.keys)
            if job.streak > MAX_CONSECUTIVE_PROVIDE_FAILURES or (last and job.streak == job.sent):
                job.failed = True
                return self._peer_done(job, now)
        else:
            self.stores["ok"] += 1
            self.holders[key_of(key_bytes)] += 1
            self._reached_peers.add(job.peer)
            job.streak = 0
        if job.sent < len(job.keys):
            self._ready.append(job)  # its next key goes out at the next poll
        else:
            self._peer_done(job, now)

    def _peer_done(self, job: _PeerJob, now: float) -> None:
        del self._active[job.peer]
        if self._active or self._waiting or self._region is None:
            return
        region, keys, jobs = self._region
        failed = sum(1 for j in jobs if j.failed)
        reached = region_reached(len(jobs), failed)
        self._keys_reached += len(keys) if reached else 0
        self._reports.append(RegionReport(region.prefix, len(region.peers), len(keys), len(jobs) - failed, reached))
        self._next_region()

    def _check_done(self, now: float) -> None:
        if self.done:
            return
        if self.individual:
            finished = all(op.done for op in self.individual.values())
        elif self.exploration is None:
            finished = True
        else:
            finished = self.exploration.done and self._region is None and not self._in_flight and not self._ready
        if finished:
            self._finished_at = now


__all__ = [
    "INDIVIDUAL_PROVIDE_THRESHOLD", "MAX_CONSECUTIVE_NO_FRESH_PEERS", "MAX_CONSECUTIVE_PROVIDE_FAILURES",
    "MAX_EXPLORATION_PREFIX_SEARCHES", "MAX_PREFIX_SIZE", "MAX_PROVIDE_CONNS_PER_WORKER", "MAX_REPROVIDE_DELAY",
    "MIN_REGION_REACHABLE_RATIO", "PREIMAGE_BITS", "REPROVIDE_INTERVAL", "SEND_PROVIDER_RECORD_TIMEOUT",
    "Exploration", "RegionProvide", "RegionReport", "RegionResult", "region_reached",
]
