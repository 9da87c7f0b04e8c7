"""The parsec server's HTTP API (``server.yaml``): a FastAPI app around a :class:`DhtBackend`.

The app is deliberately thin: parse and bound the input, time-box the backend call, shape
the Go-compatible answer, count metrics. Three rules drive the design:

* **Measured failures are data.** Whatever goes wrong inside a provide or retrieval — an
  error result, an exception, the deadline — is answered ``200`` with the text in
  ``Error``, so the scheduler records it like any measurement.
* **Bad input is the client's fault, never a 5xx.** Every rejection is a ``4xx`` with a
  JSON body ``{"error": "…"}``; bodies are bounded (``Content-Length`` is checked before
  reading, the stream is cut off at the limit) so a huge upload cannot exhaust memory.
* **Loop-agnostic.** Production serves this with hypercorn's trio worker on the libp2p
  host's loop; tests also use asyncio. Only anyio primitives are used here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from parsec.cids import CidError, cid_v0_for, parse_cid
from parsec.config import ServerSettings
from parsec.kad.constants import deadline_exceeded
from parsec.server.backend import DhtBackend, OperationResult
from parsec.server.guard import ApiError, BearerToken, OperationSlots
from parsec.server.metrics import PROVIDE_DURATION, RETRIEVAL_TTFPR, ServerMetrics

__all__ = ["SCHEDULER_HEADER", "ApiError", "create_app", "measurement_body"]

log = logging.getLogger(__name__)

SCHEDULER_HEADER = "x-scheduler-id"
UNMATCHED_PATH = "unmatched"
"""The ``path`` metrics label of requests no route matches (raw paths would be unbounded)."""

_RETRIEVE_BODY_LIMIT = 64 * 1024  # the body is ignored ({}); anything big is abuse
_JSON_SLACK = 16 * 1024  # room for whitespace and unknown fields around "Content"

Operation = Callable[[bytes], Awaitable[OperationResult]]
_UNREAD_BODY = {"Connection": "close"}
"""On answers given before the body was read to its end: the rest of it would be taken for
the next request, so the client must not reuse the connection."""


# --- request parsing ------------------------------------------------------------------


def _base64_length(size: int) -> int:
    """Characters of the padded standard base64 of ``size`` bytes."""
    return 4 * math.ceil(size / 3)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The raw body, refusing (413) a declared or actual size above ``limit`` early, and
    (408) a body that has not arrived within ``timeout`` — a client trickling bytes must
    not hold a connection and a buffer for ever."""
    with anyio.move_on_after(timeout) as scope:
        body = await _receive_body(request, limit)
    if scope.cancel_called:
        raise ApiError(408, f"request body not received within {timeout:g}s", _UNREAD_BODY)
    return body


async def _receive_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise ApiError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes", _UNREAD_BODY)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes", _UNREAD_BODY)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client disconnected while sending the body") from None
    return b"".join(chunks)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


async def _read_json_object(request: Request, limit: int, timeout: float, *, empty_ok: bool) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` when ``empty_ok``."""
    body = await _read_body(request, limit, timeout)
    if not body.strip():
        if empty_ok:
            return {}
        raise ApiError(400, "empty request body; expected a JSON object")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, f"malformed JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"request body must be a JSON object, got {_json_type(payload)}")
    return payload


def _decode_content(payload: dict[str, Any], max_bytes: int) -> bytes:
    """The ``Content`` field: strict standard base64 of at most ``max_bytes`` bytes."""
    if "Content" not in payload:
        raise ApiError(400, 'missing field "Content" (standard base64 of the bytes to provide)')
    text = payload["Content"]
    if not isinstance(text, str):
        raise ApiError(400, f'field "Content" must be a base64 string, got {_json_type(text)}')
    if len(text) > _base64_length(max_bytes):
        raise ApiError(413, f"content larger than the limit of {max_bytes} bytes")
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, f'field "Content" is not standard base64: {error}') from None
    if len(content) > max_bytes:
        raise ApiError(413, f"content of {len(content)} bytes exceeds the limit of {max_bytes} bytes")
    return content


# --- measuring ------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _safe_routing_table_size(backend: DhtBackend) -> int:
    try:
        return max(0, int(backend.routing_table_size()))
    except Exception:  # a broken size probe must not turn a measurement into a 500
        log.exception("routing_table_size() failed")
        return 0


def _normalise(result: OperationResult) -> OperationResult:
    """Coerce a backend's result to the wire types (ints, text) so serialising cannot fail."""
    return OperationResult(
        duration_ns=max(0, int(result.duration_ns)),
        error=str(result.error or ""),
        routing_table_size=max(0, int(result.routing_table_size)),
        trace=result.trace,
    )


async def _measure(operation: Operation, key: bytes, *, backend: DhtBackend, timeout: float, step: str) -> OperationResult:
    """Run one backend operation under a deadline; every way it can fail becomes data.

    A timeout of 0 means no deadline. On failure the duration is the app's own wall-clock
    time of the attempt and the routing table size is read afterwards.
    """
    start = time.perf_counter_ns()
    result: OperationResult | None = None
    error = ""
    with anyio.move_on_after(timeout if timeout > 0 else math.inf) as scope:
        try:
            result = _normalise(await operation(key))
        except Exception as exc:
            log.warning("%s of %s raised", step, key.hex(), exc_info=True)
            error = _describe(exc)
    if scope.cancel_called:  # deadline hit, whether the backend noticed or not
        error = deadline_exceeded(step, timeout)
    elif result is not None:
        return result
    return OperationResult(
        duration_ns=time.perf_counter_ns() - start,
        error=error,
        routing_table_size=_safe_routing_table_size(backend),
    )


def _jsonable(trace: dict[str, Any]) -> Any:
    """The trace as plain JSON, or a note saying why it could not be sent."""
    try:
        return json.loads(json.dumps(trace, default=str, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as error:
        return {"error": f"trace not serialisable: {error}"}


def measurement_body(cid: str, step: str, outcome: OperationResult) -> dict[str, Any]:
    """The 200 body of ``/provide`` and ``/retrieve/{cid}`` (Go field names, one measurement).

    ``Trace`` is our addition, present only when the backend supplied one; Go readers
    ignore unknown fields.
    """
    measurement: dict[str, Any] = {"Step": step, "Duration": outcome.duration_ns, "Error": outcome.error}
    if outcome.trace is not None:
        measurement["Trace"] = _jsonable(outcome.trace)
    return {"CID": cid, "Measurements": [measurement], "RoutingTableSize": outcome.routing_table_size}


# --- error responses and request counting ----------------------------------------------


def _error_response(status: int, message: str, headers: dict[str, str] | None = None,
                    request: Request | None = None) -> JSONResponse:
    """``{"error": …}``; on an operation path also the contract's fields with one failed
    measurement (``error_measurement_body``)."""
    body: dict[str, Any] = {"error": message}
    if request is not None:
        body.update(error_measurement_body(request, status, message))
    return JSONResponse(body, status_code=status, headers=headers)


def error_measurement_body(request: Request, status: int, message: str) -> dict[str, Any]:
    """For an error answer to ``POST /provide`` or ``POST /retrieve/{cid}``: the 200 body's
    fields with one measurement whose ``Error`` says what happened, ``Duration`` 0.

    The Go scheduler does not look at status codes: it decodes every answer as a
    measurement and stores each of its ``Measurements``. Given ``{"error": …}`` alone it
    stored nothing and logged nothing (and went on to retrievals after a refused provide);
    with this it stores one failed measurement saying why, as our scheduler does. Nothing
    for other paths: the Go scheduler sends nothing else but readiness checks.
    """
    path = request.url.path
    if request.method != "POST":
        return {}
    if path == "/provide":
        step, cid = "provide", ""
    elif path.startswith("/retrieve/"):
        step, cid = "retrieval", path.removeprefix("/retrieve/")[:200]
    else:
        return {}
    return {"CID": cid, "Measurements": [{"Step": step, "Duration": 0, "Error": f"HTTP {status}: {message}"}],
            "RoutingTableSize": 0}


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc.status, exc.message, exc.headers, request)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404 unknown path, 405 wrong method) as JSON."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"unknown path {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}; allowed: {headers.get('Allow', '')}"
    else:
        message = str(exc.detail)
    return _error_response(exc.status_code, message, headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    return _error_response(400, f"invalid request: {exc}", request=request)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    """Last resort for a bug in this module: still JSON, still logged."""
    log.error("unhandled error serving %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(500, f"internal server error: {type(exc).__name__}", request=request)


def route_template(router: Router, scope: Scope) -> str:
    """The path template of the route a request hits (``/retrieve/{cid}``), bounded for labels."""
    for route in router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", UNMATCHED_PATH)
    return UNMATCHED_PATH


def path_label(template: str) -> str:
    """The ``path`` label the original's metrics use: the route's first segment
    (``/provide``, ``/retrieve``, ``/readiness``, ``/metrics``)."""
    if template == UNMATCHED_PATH:
        return template
    return "/" + template.lstrip("/").split("/", 1)[0]


class _RequestCounter:
    """ASGI middleware counting every HTTP request by method, path (``path_label``) and scheduler."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheduler = Headers(scope=scope).get(SCHEDULER_HEADER)
            self.metrics.count_request(scope["method"], path_label(route_template(self.router, scope)), scheduler)
        await self.app(scope, receive, send)


class _BoundedHead:
    """ASGI middleware refusing (431) a request whose line and headers exceed the limit.

    hypercorn (h11) bounds only a head still *incomplete* in its buffer; one that arrives
    in a single read is parsed whole, so the limit is enforced here too."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.limit:
                response = _error_response(431, f"request head of {size} bytes exceeds the limit of {self.limit} bytes")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the app --------------------------------------------------------------------------


def create_app(backend: DhtBackend, settings: ServerSettings, *, metrics: ServerMetrics | None = None) -> FastAPI:
    """A parsec server API bound to ``backend``; ``metrics`` defaults to a fresh registry."""
    metrics = metrics if metrics is not None else ServerMetrics()
    provide_body_limit = 2 * _base64_length(settings.max_content_bytes) + _JSON_SLACK
    app = FastAPI(
        title="parsec server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # server.yaml is the spec; no extra routes beside it
        redirect_slashes=False,  # /provide/ is an unknown path (404), as in the Go server
    )
    app.state.backend = backend
    app.state.metrics = metrics
    app.state.settings = settings
    token = BearerToken(settings.auth_token)
    slots = app.state.slots = OperationSlots(settings.max_concurrent_operations, settings.retry_after)

    async def answer(request: Request, cid: str, key: bytes, step: str) -> JSONResponse:
        """Measure one operation, record it, and build the shared 200 answer."""
        if step == "provide":
            operation, timeout, kind = backend.provide, settings.provide_timeout, PROVIDE_DURATION
        else:
            operation, timeout, kind = backend.retrieve, settings.retrieve_timeout, RETRIEVAL_TTFPR
        with slots.hold():
            outcome = await _measure(operation, key, backend=backend, timeout=timeout, step=step)
        metrics.observe_operation(
            kind,
            outcome.duration_ns / 1e9,
            success=outcome.success,
            scheduler=request.headers.get(SCHEDULER_HEADER),
        )
        return JSONResponse(measurement_body(cid, step, outcome))

    @app.post("/provide")
    async def provide(request: Request) -> JSONResponse:
        token.check(request.headers.get("authorization"))
        payload = await _read_json_object(request, provide_body_limit, settings.body_timeout, empty_ok=False)
        cid, key = cid_v0_for(_decode_content(payload, settings.max_content_bytes))
        return await answer(request, cid, key, "provide")

    @app.post("/retrieve/{cid}")
    async def retrieve(cid: str, request: Request) -> JSONResponse:
        token.check(request.headers.get("authorization"))
        await _read_json_object(request, _RETRIEVE_BODY_LIMIT, settings.body_timeout, empty_ok=True)
        try:
            key = parse_cid(cid)
        except CidError as error:
            raise ApiError(400, f"invalid CID {cid[:80]!r}: {error}") from None
        return await answer(request, cid, key, "retrieval")

    @app.get("/readiness")
    async def readiness() -> JSONResponse:
        try:
            ready = bool(backend.is_ready())
        except Exception:
            log.exception("is_ready() failed; answering not ready")
            ready = False
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(_RequestCounter, metrics=metrics, router=app.router)
    app.add_middleware(_BoundedHead, limit=settings.max_header_bytes)
    return app
