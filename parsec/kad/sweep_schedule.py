"""The sweeping provider's schedule: which region is due when, the burst queue, the workers.

Pure and clock-free like the rest of ``parsec.kad``: every call takes ``now``. The rules, each
with its go source (go-libp2p-kad-dht ``provider/provider.go`` and ``options.go``; kubo
``docs/config.md`` ``Provide.DHT.*``):

* **Even spread** — a prefix of n bits (at most ``MAX_PREFIX_SIZE`` = 24) has the time slot
  ``interval × i / 2ⁿ`` of the cycle, ``i`` the prefix XOR the node's own key's first n bits
  read as a number (``reprovideTimeForPrefix``): the 2ⁿ prefixes of one length tile the
  ``REPROVIDE_INTERVAL`` = 22 h evenly, the node's own neighbourhood first. The cycle starts
  when the schedule is made (``setCycleStart``); a slot's next time is the first strictly
  after now (``timeUntil``: a slot at now is a whole interval away).
* **Planning** — a key lies under the scheduled prefix that contains it, else it schedules
  its first ``prefix_len`` bits (``groupAndScheduleKeysByPrefix``); ``prefix_len`` is the mean
  common prefix length of the closest peers of a few lookups (``approxPrefixLen``:
  ``prefix_len_from_lookups``). A prefix already under a scheduled one is not scheduled; one
  containing scheduled prefixes replaces them (``schedulePrefixNoLock``,
  ``unscheduleSubsumedPrefixesNoLock``). After a reprovide, the covered prefix is unscheduled
  and every region stored is scheduled in its place (``batchReprovide``, ``provideRegions``,
  ``reschedulePrefix``); a ≤ 2-key reprovide of one key schedules the prefix its lookup
  covered (``individualProvide``).
* **Burst queue** — new keys are queued by prefix, the prefixes with most keys first, keys of
  a queued prefix joining it (``handleProvide``, ``SortPrefixesBySize``, ``queue.ProvideQueue``);
  a burst job takes the first prefix with all its keys (``provideLoop``, ``Dequeue``).
* **Workers** — ``MAX_WORKERS`` = 4, of which ``DEDICATED_PERIODIC_WORKERS`` = 2 only for
  periodic reprovides and ``DEDICATED_BURST_WORKERS`` = 1 only for burst provides; the rest is
  shared (``options.go`` defaults ``maxWorkers``, ``dedicatedPeriodicWorkers``,
  ``dedicatedBurstWorkers``; kubo's ``Provide.DHT.MaxWorkers`` default is 16). A region due
  while no periodic worker is free waits for one (``handleReprovide``'s goroutine blocks in
  ``workerPool.Acquire``).

Differences from go: failed regions are listed in ``failed`` but not retried (go re-queues
them — reprovide queue / provide queue — and retries every ``retryInterval`` = 5 min, on
burst workers); no catch-up of regions missed while offline, no persisted cycle start;
``maxReprovideDelay`` capping is not applied (go's ``min`` with an offset plus more than an
interval never binds); one region is not reprovided twice at once (go's
``claimRegionReprovide``) because a prefix is handed out once per slot.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .keyspace import KEY_BITS, Key, PeerRef, common_prefix_len, key_of
from .machine import Outcome, Request
from .sweep import MAX_PREFIX_SIZE, REPROVIDE_INTERVAL, JobKind, RegionProvide, RegionResult
from .sweep_regions import KeyStore, Prefix, bits_of, matches

MAX_WORKERS = 4
DEDICATED_PERIODIC_WORKERS = 2
DEDICATED_BURST_WORKERS = 1
APPROX_PREFIX_LEN_LOOKUPS = 4
"""go ``approxPrefixLenGCPCount``."""


def prefix_len_from_lookups(closest: Iterable[Sequence[PeerRef]]) -> int:
    """go ``approxPrefixLen``: per lookup, the common prefix length of its closest peers
    (the first against each other); the integer mean; 0 when no lookup had 2 peers."""
    samples = []
    for peers in closest:
        if len(peers) >= 2:
            samples.append(min(common_prefix_len(peers[0].key, p.key) for p in peers[1:]))
    return int(statistics.mean(samples)) if samples else 0


class WorkerPool:
    """go's worker pool: ``dedicated[kind]`` workers only that kind may use, the rest of
    ``max_workers`` shared."""

    def __init__(self, max_workers: int = MAX_WORKERS, periodic: int = DEDICATED_PERIODIC_WORKERS,
                 burst: int = DEDICATED_BURST_WORKERS) -> None:
        if periodic + burst > max_workers:
            raise ValueError("total dedicated workers exceed max workers")
        self.dedicated = {"periodic": periodic, "burst": burst}
        self.shared = max_workers - periodic - burst
        self.used = {"periodic": 0, "burst": 0}
        self.shared_used = {"periodic": 0, "burst": 0}

    def can_acquire(self, kind: JobKind) -> bool:
        return self.used[kind] < self.dedicated[kind] or sum(self.shared_used.values()) < self.shared

    def acquire(self, kind: JobKind) -> None:
        if self.used[kind] < self.dedicated[kind]:
            self.used[kind] += 1
        elif sum(self.shared_used.values()) < self.shared:
            self.shared_used[kind] += 1
        else:
            raise ValueError(f"no {kind} worker free")

    def release(self, kind: JobKind) -> None:
        if self.shared_used[kind]:
            self.shared_used[kind] -= 1
        else:
            self.used[kind] -= 1

    @property
    def busy(self) -> int:
        return sum(self.used.values()) + sum(self.shared_used.values())


@dataclass(frozen=True, slots=True)
class Job:
    """One region's work handed to a worker: a periodic reprovide of ``prefix`` (its keys from
    the keystore), or a burst provide of ``keys``. ``due``: the slot (periodic) or when the
    keys were queued (burst)."""

    kind: JobKind
    prefix: Prefix
    due: float
    keys: tuple[Key, ...] = ()


class SweepSchedule:
    """The reprovide schedule of one node's keys, on an injectable clock (rules: module
    docstring). ``jobs(now)`` hands out what is due within the worker limits; ``finished``
    takes a job's result back."""

    def __init__(self, order: Key, *, now: float, prefix_len: int, interval: float = REPROVIDE_INTERVAL,
                 workers: WorkerPool | None = None, keystore: KeyStore | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.order, self.interval, self.prefix_len = order, interval, max(0, min(prefix_len, KEY_BITS))
        self.cycle_start = self.now = now
        self.workers = workers or WorkerPool()
        self.keystore = keystore if keystore is not None else KeyStore()
        self.due: dict[Prefix, float] = {}  # scheduled prefix → its next reprovide time
        self.burst: dict[Prefix, list[Key]] = {}  # the provide queue, in queue order
        self.active: dict[Prefix, Job] = {}  # periodic jobs handed out, not finished
        self.failed: list[tuple[Job, str]] = []

    # ------------------------------------------------------------- time slots

    def slot(self, prefix: Prefix) -> float:
        """The prefix's offset in the cycle (go ``reprovideTimeForPrefix``)."""
        if not prefix:
            return 0.0
        prefix = prefix[:MAX_PREFIX_SIZE]
        n = len(prefix)
        index = int(prefix, 2) ^ (self.order >> (KEY_BITS - n))
        return self.interval * index / (1 << n)

    def next_time(self, prefix: Prefix, now: float) -> float:
        """The first time strictly after ``now`` at the prefix's slot."""
        offset = (now - self.cycle_start) % self.interval
        wait = (self.slot(prefix) - offset) % self.interval
        return now + (wait if wait > 0 else self.interval)

    # ------------------------------------------------------------- keys and prefixes

    def prefix_for(self, key: Key) -> Prefix:
        """The scheduled prefix ``key`` lies under, else its first ``prefix_len`` bits."""
        return next((p for p in self.due if matches(p, key)), bits_of(key, self.prefix_len))

    def schedule(self, prefix: Prefix, now: float) -> bool:
        """Schedule ``prefix`` unless a scheduled prefix contains it; it replaces the ones it
        contains. True if it was added."""
        if any(prefix.startswith(p) for p in self.due):
            return False
        self.unschedule_under(prefix)
        self.due[prefix] = self.next_time(prefix, now)
        return True

    def unschedule_under(self, prefix: Prefix) -> None:
        for p in [p for p in self.due if p.startswith(prefix)]:
            del self.due[p]

    def add_keys(self, multihashes: Iterable[bytes], now: float, *, provide: bool = True) -> list[Prefix]:
        """go ``StartProviding`` (``provide``: also into the burst queue) or ``AddToSchedule``:
        new keys into the keystore, their prefixes into the schedule; the prefixes queued."""
        fresh = self.keystore.put(multihashes)
        groups: dict[Prefix, list[Key]] = {}
        for mh in fresh:
            key = key_of(mh)
            prefix = self.prefix_for(key)
            self.schedule(prefix, now)
            groups.setdefault(prefix, []).append(key)
        if not provide:
            return []
        queued = sorted(groups, key=lambda p: -len(groups[p]))
        for prefix in queued:
            self.burst.setdefault(prefix, []).extend(groups[prefix])
        return queued

    # ------------------------------------------------------------- jobs

    def jobs(self, now: float, until: float | None = None) -> list[Job]:
        """The jobs to start now: burst prefixes first (queue order) while a burst worker
        is free, then periodic prefixes whose time came (earliest first, and before
        ``until`` when given) while a periodic worker is free."""
        self.now = now
        out: list[Job] = []
        while self.burst and self.workers.can_acquire("burst"):
            prefix = next(iter(self.burst))
            self.workers.acquire("burst")
            out.append(Job("burst", prefix, now, tuple(self.burst.pop(prefix))))
        due = sorted((t, p) for p, t in self.due.items() if t <= now and p not in self.active
                     and (until is None or t <= until))
        for time, prefix in due:
            if not self.workers.can_acquire("periodic"):
                break
            self.workers.acquire("periodic")
            job = Job("periodic", prefix, time)
            self.active[prefix] = job
            self.due[prefix] = time + self.interval  # the cursor moves on
            out.append(job)
        return out

    def finished(self, job: Job, result: RegionResult, now: float) -> None:
        """A job's result: the worker is free; a reprovide's regions take its place in the
        schedule; failures are listed."""
        self.workers.release(job.kind)
        if result.error is not None:
            self.failed.append((job, result.error))
        failed_regions = [r.prefix for r in result.regions if not r.reached]
        if failed_regions and result.error is None:
            self.failed.append((job, f"regions below the 20 % mark: {', '.join(failed_regions)}"))
        if job.kind != "periodic":
            return
        self.active.pop(job.prefix, None)
        if result.individual:
            if result.keys == 1 and result.regions and result.regions[0].reached:
                self.schedule(result.regions[0].prefix, now)
            return
        if result.covered is None:
            return
        prefix = result.covered if len(result.covered) < len(job.prefix) else job.prefix
        self.unschedule_under(prefix)
        for region in result.regions:
            self.schedule(region.prefix, now)
        if not any(prefix.startswith(p) or p.startswith(prefix) for p in self.due):
            self.schedule(prefix, now)  # no region had keys: keep the prefix scheduled

    def next_deadline(self, until: float | None = None) -> float | None:
        """When the next periodic prefix comes due (before ``until``), or None."""
        times = [t for p, t in self.due.items() if p not in self.active and (until is None or t <= until)]
        return min(times, default=None)

    def regions(self) -> list[Prefix]:
        """The scheduled prefixes in slot order."""
        return sorted(self.due, key=lambda p: (self.slot(p), p))


@dataclass(frozen=True, slots=True)
class CycleResult:
    """One cycle of a ``SweepCycle``: every job's ``RegionResult`` in finishing order."""

    results: tuple[RegionResult, ...]
    started_at: float
    finished_at: float | None
    failed: tuple[tuple[Job, str], ...] = field(default_factory=tuple)

    @property
    def lookups(self) -> int:
        return sum(r.lookups for r in self.results)

    @property
    def find_node(self) -> int:
        return sum(r.find_node for r in self.results)

    @property
    def add_provider(self) -> int:
        return sum(r.add_provider for r in self.results)

    @property
    def keys(self) -> int:
        return sum(r.keys for r in self.results)

    @property
    def share_reached(self) -> float:
        keys = self.keys
        return sum(r.keys_reached for r in self.results) / keys if keys else 0.0


class SweepCycle:
    """A ``Machine``: run ``schedule``'s jobs from ``now`` until ``until`` (one cycle:
    ``now + schedule.interval``): every periodic slot up to ``until`` and every burst job,
    each a machine ``make(job, now)`` gives (a ``RegionProvide``), within the worker
    limits. Done when nothing before ``until`` is left and every job finished."""

    def __init__(self, schedule: SweepSchedule, make: Callable[[Job, float], RegionProvide], *, now: float,
                 until: float) -> None:
        self.schedule, self.make, self.until = schedule, make, until
        self.now = self._started_at = now
        self.running: dict[int, tuple[Job, RegionProvide]] = {}
        self._owner: dict[Request, list[int]] = {}
        self._ids = 0
        self._results: list[RegionResult] = []
        self._finished_at: float | None = None

    def poll(self, now: float) -> list[Request]:
        self._advance(now)
        out: list[Request] = []
        while not self.done:
            for job in self.schedule.jobs(now, self.until):
                self._ids += 1
                self.running[self._ids] = (job, self.make(job, now))
            for ident, (job, machine) in list(self.running.items()):
                for request in machine.poll(now):
                    self._owner.setdefault(request, []).append(ident)
                    out.append(request)
            if not self._reap(now):
                break
        return out

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        self._advance(now)
        owners = self._owner.get(request)
        if not owners:
            return  # its machine finished (the request timed out there)
        ident = owners.pop(0)
        if not owners:
            del self._owner[request]
        if ident in self.running:
            self.running[ident][1].on_outcome(request, outcome, now)
        self._reap(now)

    def next_deadline(self) -> float | None:
        deadlines = [d for _, m in self.running.values() if (d := m.next_deadline()) is not None]
        coming = [t for p, t in self.schedule.due.items()
                  if self.now < t <= self.until and p not in self.schedule.active]
        deadlines += [min(coming)] if coming else []
        return min(deadlines, default=None)

    @property
    def done(self) -> bool:
        return self._finished_at is not None

    @property
    def returnable(self) -> bool:
        return self.done

    @property
    def result(self) -> CycleResult:
        return CycleResult(tuple(self._results), self._started_at, self._finished_at, tuple(self.schedule.failed))

    def _advance(self, now: float) -> None:
        if now < self.now:
            raise ValueError(f"time went backwards: {now} < {self.now}")
        self.now = now

    def _reap(self, now: float) -> bool:
        """Hand finished jobs back to the schedule; True if any finished."""
        finished = [ident for ident, (_, m) in self.running.items() if m.done]
        for ident in finished:
            job, machine = self.running.pop(ident)
            result = machine.result
            self._results.append(result)
            self.schedule.finished(job, result, now)
        if (not self.running and not self.schedule.burst and self.schedule.next_deadline(self.until) is None
                and self._finished_at is None):
            self._finished_at = now
        return bool(finished)
