"""What one DHT operation did on the wire: the ``Trace`` stored beside every measurement.

Why here, in the engine: every driver of the engine — libp2p streams (``parsec.net.driver``)
and the simulator's virtual clock (``parsec.sim``) — must report an operation the same way,
so that a simulated dataset has exactly the trace fields of a real one and the notebooks
read both alike. A trace is filled from the engine's own result records (``LookupResult``,
``ProvideResult``); the driver adds only what it alone knows (RPCs as it sent them, when
answers arrived, path round trips).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .keyspace import PeerRef
from .lookup_types import LookupResult
from .machine import RPC_NAMES, Failure, Outcome, Request
from .provide import ProvideResult
from .path_bound import PathBound
from .routing import RoutingTable

__all__ = ["RPC_NAMES", "Recorder", "Trace", "provide_error"]


@dataclass
class Trace:
    """What one DHT operation did on the wire. ``rpcs`` counts requests by message type
    name (``FIND_NODE``, ``GET_PROVIDERS``, ``ADD_PROVIDER``)."""

    operation: str
    rpcs: Counter = field(default_factory=Counter)
    failures: int = 0
    peers_contacted: int = 0
    hops: int = 0
    first_response_s: float | None = None
    last_response_s: float | None = None
    holders: list[str] = field(default_factory=list)  # peers that took the record (by answer time)
    targets: list[str] = field(default_factory=list)  # peers the strategy chose to store on
    extra: dict[str, Any] = field(default_factory=dict)

    def mark_response(self, offset: float) -> None:
        if self.first_response_s is None or offset < self.first_response_s:
            self.first_response_s = offset
        if self.last_response_s is None or offset > self.last_response_s:
            self.last_response_s = offset

    def absorb(self, result: LookupResult) -> None:
        self.peers_contacted += result.peers_contacted
        self.hops = max(self.hops, result.hops)
        self.failures += result.failures + result.timeouts
        for mark in (result.first_response_at, result.last_response_at):
            if mark is not None:
                self.mark_response(mark - result.started_at)

    def absorb_provide(self, result: ProvideResult) -> None:
        """A provide's lookup, where the record went and how its stores ended."""
        if result.lookup is not None:
            self.absorb(result.lookup)
        self.holders = [peer.peer_id.hex() for peer in result.holders]
        self.targets = [peer.peer_id.hex() for peer in result.store_targets]
        self.extra.update(strategy=result.strategy, fell_back=result.fell_back, stores_ok=result.stores_ok,
                          stores_failed=result.stores_failed, walk_end=result.walk_end,
                          early_stores=result.early_stores)

    def as_dict(self) -> dict:
        return {
            "operation": self.operation,
            "rpcs": dict(self.rpcs),
            "rpc_total": sum(self.rpcs.values()),
            "failures": self.failures,
            "peers_contacted": self.peers_contacted,
            "hops": self.hops,
            "first_response_s": self.first_response_s,
            "last_response_s": self.last_response_s,
            "holders": len(self.holders),
            "targets": len(self.targets),
            **self.extra,
        }


def provide_error(result: ProvideResult) -> str | None:
    """The error text of a provide that stored the record nowhere; None if it stored it."""
    if result.stores_ok == 0:
        return f"no ADD_PROVIDER succeeded ({result.strategy} provide, walk end {result.walk_end})"
    return None


RequestCost = Callable[[PeerRef, bool], float]
"""The latency model's least cost of a request to a peer sent now; the flag says whether it
expects an answer (an ADD_PROVIDER is written and done)."""


class Recorder:
    """What a driver notes around one machine's requests, the same way in every driver.

    On each request sent: its count in ``trace`` (by message type name) and its least cost
    in ``bound``. On each answered FIND_NODE / GET_PROVIDERS: the answer's time in ``trace``
    (from ``started``) and ``bound``, and the peer into ``routing`` (a peer that answered is
    a live DHT server). ADD_PROVIDERs are counted, never timed (they have no answer). Every
    part is optional: a crawl records nothing.
    """

    __slots__ = ("trace", "started", "bound", "cost", "routing")

    def __init__(self, trace: Trace | None = None, started: float = 0.0, *, bound: PathBound | None = None,
                 cost: RequestCost | None = None, routing: RoutingTable | None = None) -> None:
        if bound is not None and cost is None:
            raise ValueError("a path bound needs the request cost")
        self.trace = trace
        self.started = started
        self.bound = bound
        self.cost = cost
        self.routing = routing

    def sent(self, request: Request, now: float) -> None:
        if self.trace is not None:
            self.trace.rpcs[RPC_NAMES[request.kind]] += 1
        bound = self.bound
        if bound is not None:
            assert self.cost is not None
            if request.kind == "add_provider":
                bound.stored(request.peer, self.cost(request.peer, False))
            else:
                bound.asked(request.peer, self.cost(request.peer, True), now)

    def settled(self, request: Request, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, Failure) or request.kind == "add_provider":
            return
        if self.trace is not None:
            self.trace.mark_response(now - self.started)
        if self.bound is not None:
            self.bound.answered(request.peer, now)
        if self.routing is not None:
            self.routing.add(request.peer)
