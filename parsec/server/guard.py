"""Who may start a DHT operation on this server, and how many may run at once.

Both checks answer before any DHT work starts, so a stranger or a flood costs the server a
parse, not a lookup:

* :class:`BearerToken` — with ``PARSEC_SERVER_AUTH_TOKEN`` set, ``/provide`` and
  ``/retrieve`` need ``Authorization: Bearer <token>``. The comparison is
  :func:`hmac.compare_digest` on the bytes, so its time does not reveal how much of a guess
  was right. ``/readiness`` and ``/metrics`` stay open: schedulers and Prometheus poll them
  and they start no DHT work.
* :class:`OperationSlots` — at most ``max_concurrent_operations`` provides/retrievals in
  flight; the next one is answered ``429`` with ``Retry-After`` at once instead of queueing
  (a queued measurement would time its wait, not the DHT).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr


class ApiError(Exception):
    """A rejected request: answered with ``status``, ``{"error": message}`` and ``headers``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class BearerToken:
    """Checks the ``Authorization`` header against the configured token (if any)."""

    def __init__(self, token: SecretStr | None) -> None:
        self._expected = token.get_secret_value().encode() if token is not None else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def check(self, authorization: str | None) -> None:
        """Return if the request may proceed, else raise :class:`ApiError` (401)."""
        if self._expected is None:
            return
        # refused before the body is read: the connection cannot carry another request
        challenge = {"WWW-Authenticate": 'Bearer realm="parsec"', "Connection": "close"}
        if not authorization:
            raise ApiError(401, "missing bearer token (Authorization: Bearer <PARSEC_SERVER_AUTH_TOKEN>)", challenge)
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(401, "the Authorization header must be 'Bearer <token>'", challenge)
        if not hmac.compare_digest(presented.strip().encode(), self._expected):
            raise ApiError(401, "invalid bearer token",
                           {**challenge, "WWW-Authenticate": 'Bearer realm="parsec", error="invalid_token"'})


class OperationSlots:
    """A non-blocking counter of DHT operations in flight (one event loop, no lock needed)."""

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_flight = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for the ``with`` body, or raise :class:`ApiError` (429) when all are taken."""
        if self.in_flight >= self.limit:
            raise ApiError(429, f"{self.in_flight} DHT operations in flight (limit {self.limit}); retry later",
                          {"Retry-After": str(self.retry_after)})
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
