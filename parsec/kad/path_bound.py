"""The least time an operation could have taken on the path it took: its error bar's floor.

A latency model (the testbed's emulated WAN, the simulator's network) says what each
request costs at least: a round trip to the peer, plus the connection set-up when the
request had to dial. An iterative walk asks a peer only after the peer that named it
answered, so the costs along the chain of referrers that led to a peer add up to a lower
bound of when that peer's answer could arrive (``Lookup.path_to``). The driver records
each request's cost and each answer's time; this module composes them:

* **retrieval** (TTFPR): the chain to the peer that answered with the first provider
  record (``Lookup.provider_path``);
* **provide**: the walk's critical path — the longest chain among the peers that answered
  before the walk ended, which its end waited for — and, for every store settled before
  the caller was answered, the chain to its peer (if it answered the walk) plus the
  store's own cost. Requests that failed or timed out are not counted, so the bound stays
  a bound (and is loose where a provide waited for dial timeouts).

Measured duration ÷ bound is how much of a duration the path does not explain. Part of
it is the walk's own rules: a peer named on the path may wait for a free slot (``alpha``
requests in flight) before it is asked; ``wait`` sums those waits along the path. The rest
is processing, queueing, and time the host could not run (``host_lag_ms``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .keyspace import PeerRef

PathTo = Callable[[PeerRef], list[PeerRef]]
"""``Lookup.path_to``: the chain of peers that led to a peer, seed first."""


class PathBound:
    """Request costs and answer times of one operation (seconds, the driver's clock)."""

    def __init__(self) -> None:
        self._cost: dict[PeerRef, float] = {}  # FIND_NODE / GET_PROVIDERS to the peer
        self._store_cost: dict[PeerRef, float] = {}  # ADD_PROVIDER to the peer
        self._answered: dict[PeerRef, float] = {}
        self._asked_at: dict[PeerRef, float] = {}

    def asked(self, peer: PeerRef, cost: float, at: float | None = None) -> None:
        """A request that expects an answer went to ``peer`` (at ``at``); the model's
        least cost."""
        self._cost[peer] = cost
        if at is not None:
            self._asked_at.setdefault(peer, at)

    def stored(self, peer: PeerRef, cost: float) -> None:
        """An ADD_PROVIDER went to ``peer``; the model's least cost of delivering it."""
        self._store_cost[peer] = cost

    def answered(self, peer: PeerRef, at: float) -> None:
        self._answered.setdefault(peer, at)

    def chain(self, path: Iterable[PeerRef]) -> float:
        """The sum of the costs along ``path`` (a peer never asked costs nothing)."""
        return sum(self._cost.get(peer, 0.0) for peer in path)

    def wait(self, path: list[PeerRef], started: float) -> float | None:
        """Seconds the peers of ``path`` waited to be asked after the previous one answered
        (the first after ``started``); None if a time is missing."""
        waited, ready = 0.0, started
        for peer in path:
            asked = self._asked_at.get(peer)
            if asked is None:
                return None
            waited += max(0.0, asked - ready)
            ready = self._answered.get(peer)
            if ready is None:
                return None
        return round(waited, 4)

    def retrieval(self, provider_path: list[PeerRef]) -> float | None:
        """The bound of a time to the first provider record; None without a record."""
        return round(self.chain(provider_path), 4) if provider_path else None

    def provide(self, path_to: PathTo | None, walk_ended_at: float | None,
                stores_settled: Iterable[PeerRef]) -> float:
        """The bound of a provide answered after ``stores_settled`` (its holders then)."""
        bound = 0.0
        if path_to is not None and walk_ended_at is not None:
            bound = max((self.chain(path_to(peer)) for peer, at in self._answered.items() if at <= walk_ended_at),
                        default=0.0)
        for peer in stores_settled:
            reached = self.chain(path_to(peer)) if path_to is not None and peer in self._answered else 0.0
            bound = max(bound, reached + self._store_cost.get(peer, 0.0))
        return round(bound, 4)
