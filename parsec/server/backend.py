"""The seam between the HTTP API and a DHT implementation.

The app (:mod:`parsec.server.app`) only parses requests, applies timeouts and shapes
answers; everything that touches the network sits behind :class:`DhtBackend`. That keeps
the HTTP layer testable with a fake and lets each fleet (stock py-libp2p, our engine,
optimistic provide, full routing table) plug in without the API changing.

Backends are called on whatever event loop serves the app — hypercorn's **trio** worker
in production, asyncio in some tests — so they must be written against anyio/trio
primitives the loop actually runs, and must not block it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from parsec.kad.constants import NOT_FOUND  # the exact Error text of a lookup without provider (the contract's)

__all__ = ["NOT_FOUND", "DhtBackend", "OperationResult"]


@dataclass(frozen=True)
class OperationResult:
    """One timed DHT operation, as the API reports it.

    ``duration_ns`` covers the DHT call alone (provide) or the time to the first provider
    record (retrieve), not HTTP or parsing. ``error`` is ``""`` on success,
    :data:`NOT_FOUND` for a lookup without provider, else the failure text — a failure is
    a data point, not an HTTP error. ``routing_table_size`` is measured *after* the
    operation. ``trace`` is optional per-operation detail (RPC and hop counts …) passed
    through to the response so results can be explained, not only plotted.
    """

    duration_ns: int
    error: str = ""
    routing_table_size: int = 0
    trace: dict[str, Any] | None = None

    @property
    def success(self) -> bool:
        return self.error == ""


@runtime_checkable
class DhtBackend(Protocol):
    """What a parsec server needs from a DHT node. ``key`` is always multihash bytes."""

    async def provide(self, key: bytes) -> OperationResult:
        """Announce this node as provider of ``key``; time the DHT provide call alone."""
        ...

    async def retrieve(self, key: bytes) -> OperationResult:
        """Look up providers of ``key`` until the first record; then forget that provider
        (close connections, drop addresses) so the next probe is not warm."""
        ...

    def routing_table_size(self) -> int:
        """Peers in the routing table now; cheap, never blocks."""
        ...

    def is_ready(self) -> bool:
        """True once the node can measure: routing table populated, registration done."""
        ...
