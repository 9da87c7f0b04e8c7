"""Protocol constants and the contract's error texts, defined once for every room.

The Kademlia constants are go-libp2p-kad-dht's (``alpha``, ``beta``, bucket size ``k``, the
per-RPC timeout, the routing-table refresh); the error texts are the ones a parsec server
answers with (interface.md), so the HTTP server and the simulator spell them alike.
"""

from __future__ import annotations

ALPHA = 10
"""Requests in flight during a lookup's walk (go: ``Concurrency`` 10)."""

BETA = 3
"""The closest peers that must have answered for a walk to converge (go: ``Resiliency``)."""

K = 20
"""Bucket size and the number of closest peers a lookup returns (go: ``BucketSize``)."""

RPC_TIMEOUT = 10.0
"""Seconds one request may take before it counts as timed out."""

REFRESH_CPLS = 12
"""Buckets a routing-table refresh looks up a key for (go refreshes up to cpl 15,
skipping empty ones)."""

REFRESH_PERIOD = 600.0
"""go-libp2p-kad-dht: routing table refresh every 10 minutes."""

NOT_FOUND = "not found"
"""The error of a retrieval that ended without a provider record."""

NOT_READY = "full routing table not ready: first crawl not finished"
"""The error of a ``fullrt`` provide or retrieval before its first crawl finished."""


def deadline_exceeded(step: str, limit: float) -> str:
    """The error of an operation that ran past its deadline (go's context error text)."""
    return f"context deadline exceeded ({step} timeout {limit:g}s)"
