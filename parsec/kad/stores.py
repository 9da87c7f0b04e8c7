"""Bookkeeping of ADD_PROVIDER stores, shared by every provide strategy.

``StoreSet`` tracks each store of one operation (scheduled, sent, settled, timed out);
``BackgroundPool`` bounds the stores all optimistic provides of a node may leave running
after answering their caller. Split from ``optprov`` so each module stays one job.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable

from .keyspace import PeerRef

OPTPROV_POOL_SIZE = 60
"""go ``optProvJobsPoolSize``: ADD_PROVIDERs allowed to finish in the background at once,
across all optimistic provides of one node."""


class StoreState(enum.Enum):
    """Where one ADD_PROVIDER stands."""

    SCHEDULED = "scheduled"  # decided, not yet handed to the driver
    SENT = "sent"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"  # still pending when the operation was stopped


_STORE_PENDING = frozenset({StoreState.SCHEDULED, StoreState.SENT})
_STORE_UNSUCCESSFUL = frozenset({StoreState.FAILED, StoreState.TIMED_OUT})


class StoreSet:
    """The ADD_PROVIDER RPCs of one operation: each peer at most once, with timeouts."""

    def __init__(self, rpc_timeout: float) -> None:
        if not rpc_timeout > 0:
            raise ValueError(f"rpc_timeout must be > 0, got {rpc_timeout}")
        self.rpc_timeout = rpc_timeout
        self._states: dict[PeerRef, StoreState] = {}  # in scheduling order
        self._deadlines: dict[PeerRef, float] = {}  # SENT stores only
        self._errors: Counter[str] = Counter()

    def schedule(self, peers: Iterable[PeerRef]) -> int:
        """Decide to store on ``peers`` (already known ones are skipped); how many new."""
        added = 0
        for peer in peers:
            if peer not in self._states:
                self._states[peer] = StoreState.SCHEDULED
                added += 1
        return added

    def send_scheduled(self, now: float) -> list[PeerRef]:
        """Hand the scheduled stores to the driver; their timeout starts now."""
        sent = [peer for peer, state in self._states.items() if state is StoreState.SCHEDULED]
        for peer in sent:
            self._states[peer] = StoreState.SENT
            self._deadlines[peer] = now + self.rpc_timeout
        return sent

    def settle(self, peer: PeerRef, ok: bool, error: str = "") -> bool:
        """Record the outcome of the store on ``peer``; False if it was no longer awaited
        (timed out or abandoned). A store never sent is a driver bug: ValueError."""
        state = self._states.get(peer)
        if state in (StoreState.TIMED_OUT, StoreState.ABANDONED):
            return False
        if state is not StoreState.SENT:
            raise ValueError(f"no ADD_PROVIDER in flight to {peer!r} (state: {state})")
        del self._deadlines[peer]
        self._states[peer] = StoreState.OK if ok else StoreState.FAILED
        if not ok:
            self._errors[error] += 1
        return True

    def expire(self, now: float) -> int:
        """Time out every sent store whose deadline passed; how many."""
        expired = [peer for peer, deadline in self._deadlines.items() if deadline <= now]
        for peer in expired:
            del self._deadlines[peer]
            self._states[peer] = StoreState.TIMED_OUT
        return len(expired)

    def abandon(self) -> None:
        for peer, state in self._states.items():
            if state in _STORE_PENDING:
                self._states[peer] = StoreState.ABANDONED
        self._deadlines.clear()

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def count(self, *states: StoreState) -> int:
        return sum(1 for state in self._states.values() if state in states)

    @property
    def pending(self) -> int:
        return self.count(*_STORE_PENDING)

    @property
    def successes(self) -> int:
        return self.count(StoreState.OK)

    @property
    def completions(self) -> int:
        return self.count(StoreState.OK, *_STORE_UNSUCCESSFUL)

    def __contains__(self, peer: object) -> bool:
        return peer in self._states

    def __len__(self) -> int:
        return len(self._states)

    def peers(self, *states: StoreState) -> list[PeerRef]:
        """Peers in scheduling order, optionally only those in ``states``."""
        return [p for p, s in self._states.items() if not states or s in states]

    @property
    def errors(self) -> dict[str, int]:
        return dict(self._errors)


class BackgroundPool:
    """Leases for ADD_PROVIDERs left running after an optimistic provide returned.

    go bounds them per node with a 60-slot channel (``optProvJobsPool``): a provide may
    return early only once each of its still-pending stores holds a lease (or finished);
    otherwise it keeps waiting. Share one pool between all operations of a node; when a
    lease frees up, ``poll`` the operations still waiting so they can take it.
    """

    def __init__(self, size: int = OPTPROV_POOL_SIZE) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self.in_use = 0

    @property
    def free(self) -> int:
        return self.size - self.in_use

    def acquire(self, wanted: int) -> int:
        """Take up to ``wanted`` leases; how many were granted."""
        granted = max(0, min(wanted, self.free))
        self.in_use += granted
        return granted

    def release(self, count: int) -> None:
        if not 0 <= count <= self.in_use:
            raise ValueError(f"cannot release {count} of {self.in_use} leases")
        self.in_use -= count

    def __repr__(self) -> str:
        return f"BackgroundPool(size={self.size}, in_use={self.in_use})"
