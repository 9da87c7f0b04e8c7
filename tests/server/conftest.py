"""Shared pieces for the HTTP-layer tests: a fake DHT backend, settings, an in-process client.

The fake is fine here because these tests are about the HTTP contract only; the real
backends are exercised against live peers elsewhere.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from fastapi import FastAPI

from parsec.config import ServerSettings
from parsec.server.app import create_app
from parsec.server.backend import OperationResult
from parsec.server.metrics import ServerMetrics


@dataclass
class FakeBackend:
    """A DhtBackend whose answers, delay and failures are set per test; records its calls."""

    ready: bool = True
    rt_size: int = 42
    duration_ns: int = 1_500_000
    provide_error: str = ""
    retrieve_error: str = ""
    delay: float = 0.0
    raises: Exception | None = None
    size_raises: bool = False
    trace: dict | None = None
    calls: list[tuple[str, bytes]] = field(default_factory=list)

    async def provide(self, key: bytes) -> OperationResult:
        return await self._run("provide", key, self.provide_error)

    async def retrieve(self, key: bytes) -> OperationResult:
        return await self._run("retrieve", key, self.retrieve_error)

    async def _run(self, name: str, key: bytes, error: str) -> OperationResult:
        self.calls.append((name, key))
        if self.delay:
            await anyio.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        return OperationResult(self.duration_ns, error, self.rt_size, self.trace)

    def routing_table_size(self) -> int:
        if self.size_raises:
            raise RuntimeError("size probe broken")
        return self.rt_size

    def is_ready(self) -> bool:
        return self.ready


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_settings(**overrides) -> ServerSettings:
    values = {"max_content_bytes": 4096, "provide_timeout": 5.0, "retrieve_timeout": 5.0, **overrides}
    return ServerSettings(**values)


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in-process, on the running (trio/asyncio) loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parsec.test") as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    """Production serves the app with hypercorn's trio worker: test on trio by default."""
    return "trio"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def metrics() -> ServerMetrics:
    return ServerMetrics()


@pytest.fixture
def app(backend: FakeBackend, metrics: ServerMetrics) -> FastAPI:
    return create_app(backend, make_settings(), metrics=metrics)
