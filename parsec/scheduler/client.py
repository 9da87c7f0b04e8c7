"""The scheduler's HTTP client for parsec servers (ours or the Go original).

Unlike the original it sets timeouts and checks status codes; whatever goes wrong
(refused connection, timeout, 5xx, a body that is not the contract's) comes back as a
``ServerReply`` with ``error`` set, so the round records it as data instead of losing it.

aiohttp rather than httpx: against the same server, an httpx request costs more client time
than an aiohttp one, and that difference is framework overhead added to every measurement's
wall time. ``bench/overhead.py`` measures the overhead of the whole path; the two clients
side by side: docs/operations.md, "By-hand observations".
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, replace

import aiohttp

SCHEDULER_HEADER = "x-scheduler-id"


@dataclass(frozen=True)
class ServerReply:
    """One measurement as the scheduler records it; ``more`` holds the reply's further
    measurements (a Go IPNI server answers a provide with several steps)."""

    step: str
    duration_s: float
    error: str | None       # None = success (stored as NULL)
    cid: str
    rt_size: int
    http_status: int | None = None
    trace: str | None = None  # JSON of the measurement's optional "Trace" (our servers send one)
    more: tuple[ServerReply, ...] = ()

    def all(self) -> list[ServerReply]:
        """Every measurement of the reply, this one first."""
        return [self, *self.more]


def node_url(ip_address: str, port: int) -> str:
    host = f"[{ip_address}]" if ":" in ip_address else ip_address
    return f"http://{host}:{port}"


def parse_measurement(body: object, default_step: str, cid: str) -> ServerReply:
    """The contract's response body → ServerReply (its first measurement, the others in
    ``more``); raises ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("response is not a JSON object")
    measurements = body.get("Measurements")
    if not isinstance(measurements, list) or not measurements:
        raise ValueError("response has no Measurements")
    rt_size = body.get("RoutingTableSize", 0)
    rt_size = int(rt_size) if isinstance(rt_size, int) and not isinstance(rt_size, bool) else 0
    reply_cid = str(body.get("CID") or cid)
    replies = [_one_measurement(item, index, default_step, reply_cid, rt_size)
               for index, item in enumerate(measurements)]
    first, *more = replies
    return replace(first, more=tuple(more))


def _one_measurement(item: object, index: int, default_step: str, cid: str, rt_size: int) -> ServerReply:
    if not isinstance(item, dict):
        raise ValueError(f"Measurements[{index}] is not an object")
    duration = item.get("Duration")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
        raise ValueError(f"Measurements[{index}].Duration is not a non-negative integer")
    error = item.get("Error", "")
    if not isinstance(error, str):
        raise ValueError(f"Measurements[{index}].Error is not a string")
    step = item.get("Step") or default_step  # the Go server sends "" for retrievals
    trace = item.get("Trace")
    return ServerReply(
        step=step if isinstance(step, str) else default_step,
        duration_s=duration / 1e9,
        error=error or None,
        cid=cid,
        rt_size=rt_size,
        http_status=200,
        trace=json.dumps(trace, separators=(",", ":")) if isinstance(trace, dict) else None,
    )


def _error_text(text: str) -> str:
    """What an error answer says: its ``error`` field (our servers'), else the body's start."""
    try:
        message = json.loads(text).get("error")
    except (ValueError, AttributeError):
        message = None
    return message[:200] if isinstance(message, str) else text[:200]


class ServerClient:
    """POST /provide, POST /retrieve/{cid}, GET /readiness with timeouts (asyncio)."""

    def __init__(self, scheduler_id: str, *, timeout: float = 240.0, readiness_timeout: float = 5.0,
                 auth_token: str | None = None) -> None:
        self._headers = {SCHEDULER_HEADER: scheduler_id}
        if auth_token:
            self._headers["authorization"] = f"Bearer {auth_token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._readiness_timeout = aiohttp.ClientTimeout(total=readiness_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must be made inside the running loop
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=256))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def ready(self, base_url: str) -> bool:
        try:
            async with self._http().get(f"{base_url}/readiness", timeout=self._readiness_timeout) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def provide(self, base_url: str, content: bytes, cid: str) -> ServerReply:
        body = {"Content": base64.b64encode(content).decode()}
        return await self._measure("provide", f"{base_url}/provide", body, cid)

    async def retrieve(self, base_url: str, cid: str) -> ServerReply:
        return await self._measure("retrieval", f"{base_url}/retrieve/{cid}", {}, cid)

    async def _measure(self, step: str, url: str, body: dict, cid: str) -> ServerReply:
        started = time.perf_counter()
        status = None
        try:
            async with self._http().post(url, json=body) as response:
                status = response.status
                text = await response.text()
            if status != 200:
                raise ValueError(f"HTTP {status}: {_error_text(text)}")
            return parse_measurement(json.loads(text), step, cid)
        except asyncio.TimeoutError:
            error = f"scheduler HTTP timeout after {self._timeout.total:g}s"
        except aiohttp.ClientError as failure:
            error = f"scheduler HTTP error: {type(failure).__name__}: {failure}"
        except ValueError as failure:  # includes JSON decode errors
            error = str(failure) or type(failure).__name__
        return ServerReply(step, time.perf_counter() - started, error, cid, 0, status)
