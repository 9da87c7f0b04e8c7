"""The HTTP layer against a fake backend: contract shapes, every rejection, failures as data.

Run on trio (the production loop) through httpx's in-process ASGI transport; one test runs
on asyncio to keep the app loop-agnostic.
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from parsec.cids import cid_v0_for, cid_v1_string
from parsec.server.app import create_app
from parsec.server.metrics import ServerMetrics

from .conftest import FakeBackend, b64, client_for, make_settings

pytestmark = pytest.mark.anyio

CONTENT = b"hello world\n"
CID_V0, KEY = cid_v0_for(CONTENT)
RAW_V1 = cid_v1_string(KEY)
MAX = make_settings().max_content_bytes


async def _post(app: FastAPI, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
    async with client_for(app) as client:
        return await client.post(path, headers=headers, **kwargs)


def _assert_json_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert fragment.lower() in body["error"].lower()
    path = response.request.url.path
    operation = path == "/provide" or path.startswith("/retrieve/")
    if response.request.method == "POST" and operation and status not in (404, 405):  # routed to an operation
        # a refused operation is also one failed measurement, for the Go scheduler (server.yaml)
        assert set(body) == {"error", "CID", "Measurements", "RoutingTableSize"}
        (measurement,) = body["Measurements"]
        assert measurement["Duration"] == 0 and measurement["Error"] == f"HTTP {status}: {body['error']}"
    else:
        assert set(body) == {"error"}


def _measurement(response: httpx.Response, step: str) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"CID", "Measurements", "RoutingTableSize"}
    (measurement,) = body["Measurements"]
    assert measurement["Step"] == step
    assert isinstance(measurement["Duration"], int) and measurement["Duration"] >= 0
    assert isinstance(body["RoutingTableSize"], int)
    return {**body, **measurement}


# --- happy paths ------------------------------------------------------------------------


async def test_provide_derives_cid_v0_and_provides_its_multihash(app: FastAPI, backend: FakeBackend) -> None:
    response = await _post(app, "/provide", json={"Content": b64(CONTENT)})
    result = _measurement(response, "provide")
    assert result["CID"] == CID_V0 == "QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp"
    assert result["Duration"] == backend.duration_ns
    assert result["Error"] == ""
    assert result["RoutingTableSize"] == 42
    assert "Trace" not in response.json()["Measurements"][0]
    assert backend.calls == [("provide", bytes((0x12, 0x20)) + hashlib.sha256(CONTENT).digest())]


async def test_provide_of_1024_random_bytes_like_the_scheduler(app: FastAPI, backend: FakeBackend) -> None:
    content = random.Random(1).randbytes(1024)
    response = await _post(app, "/provide", json={"Content": b64(content)}, headers={"x-scheduler-id": "default"})
    assert _measurement(response, "provide")["CID"] == cid_v0_for(content)[0]


async def test_provide_ignores_unknown_fields(app: FastAPI) -> None:
    response = await _post(app, "/provide", json={"Content": b64(CONTENT), "Target": "DHT"})
    assert _measurement(response, "provide")["CID"] == CID_V0


async def test_failed_provide_is_still_200_with_the_error(app: FastAPI, backend: FakeBackend) -> None:
    backend.provide_error = "failed to find any peer in table"
    result = _measurement(await _post(app, "/provide", json={"Content": b64(CONTENT)}), "provide")
    assert result["Error"] == "failed to find any peer in table"


async def test_trace_is_passed_through_as_json(app: FastAPI, backend: FakeBackend) -> None:
    backend.trace = {"rpcs": 3, "hops": [1, 2], "peer": b"\x01", "nan": float("nan")}
    response = await _post(app, "/provide", json={"Content": b64(CONTENT)})
    assert response.status_code == 200
    assert "trace not serialisable" in json.dumps(response.json()["Measurements"][0]["Trace"])
    backend.trace = {"rpcs": 3, "peer": b"\x01"}
    response = await _post(app, "/provide", json={"Content": b64(CONTENT)})
    assert response.json()["Measurements"][0]["Trace"] == {"rpcs": 3, "peer": "b'\\x01'"}


@pytest.mark.parametrize("cid", [CID_V0, RAW_V1, cid_v1_string(KEY, codec=0x70)])
@pytest.mark.parametrize("body", [{"json": {}}, {"content": b""}, {"content": b"  \n"}, {"json": {"any": 1}}])
async def test_retrieve_accepts_empty_or_object_body_and_any_cid_form(
    app: FastAPI, backend: FakeBackend, cid: str, body: dict
) -> None:
    result = _measurement(await _post(app, f"/retrieve/{cid}", **body), "retrieval")
    assert result["CID"] == cid
    assert result["Error"] == ""
    assert backend.calls == [("retrieve", KEY)]


async def test_retrieve_without_body_or_content_length(app: FastAPI) -> None:
    async with client_for(app) as client:
        request = client.build_request("POST", f"/retrieve/{CID_V0}")
        del request.headers["content-length"]
        response = await client.send(request)
    assert _measurement(response, "retrieval")["Error"] == ""


async def test_retrieve_not_found(app: FastAPI, backend: FakeBackend) -> None:
    backend.retrieve_error = "not found"
    assert _measurement(await _post(app, f"/retrieve/{CID_V0}", json={}), "retrieval")["Error"] == "not found"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_round_trip_on_asyncio_too(app: FastAPI, backend: FakeBackend) -> None:
    provided = _measurement(await _post(app, "/provide", json={"Content": b64(CONTENT)}), "provide")
    retrieved = _measurement(await _post(app, f"/retrieve/{provided['CID']}", json={}), "retrieval")
    assert retrieved["Error"] == ""
    backend.delay = 10.0
    slow = create_app(backend, make_settings(retrieve_timeout=0.05))
    timed_out = _measurement(await _post(slow, f"/retrieve/{CID_V0}", json={}), "retrieval")
    assert timed_out["Error"].startswith("context deadline exceeded")


# --- failures inside the backend are data -----------------------------------------------


@pytest.mark.parametrize(("path", "step"), [("/provide", "provide"), (f"/retrieve/{CID_V0}", "retrieval")])
async def test_backend_exception_becomes_200_with_error_text(
    app: FastAPI, backend: FakeBackend, metrics: ServerMetrics, path: str, step: str
) -> None:
    backend.raises = RuntimeError("stream reset by peer")
    response = await _post(app, path, json={"Content": b64(CONTENT)})
    result = _measurement(response, step)
    assert result["Error"] == "RuntimeError: stream reset by peer"
    assert result["RoutingTableSize"] == 42
    assert 'success="false"' in metrics.render()[0].decode()


async def test_exception_without_message_and_broken_size_probe(app: FastAPI, backend: FakeBackend) -> None:
    backend.raises = ConnectionError()
    backend.size_raises = True
    result = _measurement(await _post(app, "/provide", json={"Content": b64(CONTENT)}), "provide")
    assert result["Error"] == "ConnectionError"
    assert result["RoutingTableSize"] == 0


@pytest.mark.parametrize(
    ("path", "step", "setting"),
    [("/provide", "provide", "provide_timeout"), (f"/retrieve/{CID_V0}", "retrieval", "retrieve_timeout")],
)
async def test_timeout_is_a_measurement(backend: FakeBackend, path: str, step: str, setting: str) -> None:
    backend.delay = 30.0
    app = create_app(backend, make_settings(**{setting: 0.05}))
    started = time.monotonic()
    result = _measurement(await _post(app, path, json={"Content": b64(CONTENT)}), step)
    assert time.monotonic() - started < 5
    assert result["Error"] == f"context deadline exceeded ({step} timeout 0.05s)"
    assert result["Duration"] >= 50_000_000
    assert result["RoutingTableSize"] == 42


async def test_zero_timeout_means_no_deadline(backend: FakeBackend) -> None:
    backend.delay = 0.01
    app = create_app(backend, make_settings(provide_timeout=0))
    assert _measurement(await _post(app, "/provide", json={"Content": b64(CONTENT)}), "provide")["Error"] == ""


# --- bad input: always 4xx with a JSON error, never reaching the backend --------------------


BAD_PROVIDE_BODIES = [
    (b"", 400, "empty request body"),
    (b"{", 400, "malformed JSON"),
    (b'{"Content": "aGk="', 400, "malformed JSON"),
    (b"\xff\xfe{}", 400, "malformed JSON"),
    (b"[" * 20_000, 400, "malformed JSON"),  # RecursionError inside json
    (b"[]", 400, "got array"),
    (b'"aGk="', 400, "got string"),
    (b"1", 400, "got number"),
    (b"null", 400, "got null"),
    (b"{}", 400, 'missing field "Content"'),
    (b'{"content": "aGk="}', 400, 'missing field "Content"'),
    (b'{"Content": 1}', 400, "got number"),
    (b'{"Content": null}', 400, "got null"),
    (b'{"Content": ["aGk="]}', 400, "got array"),
    (b'{"Content": {"b": 1}}', 400, "got object"),
    (b'{"Content": true}', 400, "got boolean"),
    (b'{"Content": "abc"}', 400, "not standard base64"),
    (b'{"Content": "!!!!"}', 400, "not standard base64"),
    (b'{"Content": "aGVs bG8="}', 400, "not standard base64"),
    (b'{"Content": "aGVsbG8=\\n"}', 400, "not standard base64"),
    (b'{"Content": "-_-_"}', 400, "not standard base64"),
    (b'{"Content": "aGk=aGk="}', 400, "not standard base64"),
    (b'{"Content": "\\u00e9\\u00e9\\u00e9\\u00e9"}', 400, "not standard base64"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_PROVIDE_BODIES)
async def test_bad_provide_bodies(app: FastAPI, backend: FakeBackend, body: bytes, status: int, fragment: str) -> None:
    response = await _post(app, "/provide", content=body, headers={"content-type": "application/json"})
    _assert_json_error(response, status, fragment)
    assert backend.calls == []


async def test_content_at_the_limit_passes_and_above_is_413(app: FastAPI, backend: FakeBackend) -> None:
    assert (await _post(app, "/provide", json={"Content": b64(bytes(MAX))})).status_code == 200
    _assert_json_error(await _post(app, "/provide", json={"Content": b64(bytes(MAX + 1))}), 413, "exceeds the limit")
    _assert_json_error(await _post(app, "/provide", json={"Content": "A" * (MAX * 2)}), 413, "larger than the limit")
    assert len(backend.calls) == 1


async def test_huge_declared_body_is_refused_before_reading(app: FastAPI, backend: FakeBackend) -> None:
    async with client_for(app) as client:
        request = client.build_request("POST", "/provide", content=b"{}")
        request.headers["content-length"] = str(10**9)
        response = await client.send(request)
    _assert_json_error(response, 413, "request body of 1000000000 bytes")
    assert backend.calls == []


async def test_huge_streamed_body_without_length_is_cut_off(app: FastAPI) -> None:
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b" " * 4096

    response = await _post(app, "/provide", content=chunks())
    _assert_json_error(response, 413, "exceeds the limit")
    assert sent < 100  # the stream was abandoned, not read to the end


async def test_bad_content_length_header(app: FastAPI) -> None:
    async with client_for(app) as client:
        request = client.build_request("POST", "/provide", content=b"{}")
        request.headers["content-length"] = "lots"
        response = await client.send(request)
    _assert_json_error(response, 400, "Content-Length")


@pytest.mark.parametrize(
    ("cid", "fragment"),
    [
        ("not-a-cid", "unsupported multibase prefix"),
        ("Qm" + "0" * 44, "invalid base58btc character"),
        (CID_V0[:-2], "46 characters"),
        (RAW_V1[:-8], "truncated multihash"),
        (RAW_V1.upper(), "unsupported multibase"),
        ("b" + "a" * 700, "longer than 512"),
        ("%C3%A9", "unsupported multibase"),
    ],
)
async def test_unparsable_cid_is_400(app: FastAPI, backend: FakeBackend, cid: str, fragment: str) -> None:
    _assert_json_error(await _post(app, f"/retrieve/{cid}", json={}), 400, fragment)
    assert backend.calls == []


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [(b"{", 400, "malformed JSON"), (b"[]", 400, "got array"), (b"null", 400, "got null"), (b"{}" + b" " * 70_000, 413, "")],
)
async def test_bad_retrieve_bodies(app: FastAPI, body: bytes, status: int, fragment: str) -> None:
    _assert_json_error(await _post(app, f"/retrieve/{CID_V0}", content=body), status, fragment)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/provide", "POST"),
        ("PUT", "/provide", "POST"),
        ("GET", f"/retrieve/{CID_V0}", "POST"),
        ("DELETE", f"/retrieve/{CID_V0}", "POST"),
        ("POST", "/readiness", "GET"),
        ("HEAD", "/readiness", "GET"),
        ("POST", "/metrics", "GET"),
    ],
)
async def test_wrong_method_is_405_json(app: FastAPI, method: str, path: str, allow: str) -> None:
    async with client_for(app) as client:
        response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        _assert_json_error(response, 405, "not allowed")


@pytest.mark.parametrize("path", ["/", "/nope", "/provide/", "/retrieve", "/retrieve/", f"/retrieve/{CID_V0}/x", "/docs", "/openapi.json"])
async def test_unknown_path_is_404_json(app: FastAPI, path: str) -> None:
    async with client_for(app) as client:
        for method in ("GET", "POST"):
            _assert_json_error(await client.request(method, path), 404, "unknown path")


async def test_random_bodies_never_cause_a_5xx(app: FastAPI) -> None:
    rng = random.Random(42)
    pieces = [b"{", b"}", b"[", b"]", b'"Content"', b":", b",", b'"aGk="', b"null", b"1e999", b"\xff", b"\\u0000", b" "]
    async with client_for(app) as client:
        for _ in range(300):
            body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
            for path in ("/provide", f"/retrieve/{CID_V0}"):
                response = await client.post(path, content=body)
                assert response.status_code < 500, (path, body, response.text)
                assert response.headers["content-type"].startswith("application/json")


# --- readiness and metrics ----------------------------------------------------------------


async def test_readiness_follows_the_backend(app: FastAPI, backend: FakeBackend) -> None:
    async with client_for(app) as client:
        ready = await client.get("/readiness")
        backend.ready = False
        not_ready = await client.get("/readiness")
        backend.is_ready = lambda: 1 / 0  # type: ignore[method-assign]
        broken = await client.get("/readiness")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert (not_ready.status_code, not_ready.json()) == (503, {"ready": False})
    assert (broken.status_code, broken.json()) == (503, {"ready": False})


async def test_metrics_record_operations_and_requests_by_route_template(app: FastAPI, backend: FakeBackend) -> None:
    async with client_for(app) as client:
        sched = {"x-scheduler-id": "optprov"}
        await client.post("/provide", json={"Content": b64(CONTENT)}, headers=sched)
        await client.post(f"/retrieve/{CID_V0}", json={}, headers=sched)
        await client.post(f"/retrieve/{RAW_V1}", json={}, headers=sched)
        backend.retrieve_error = "not found"
        await client.post(f"/retrieve/{CID_V0}", json={})
        await client.post("/retrieve/garbage", json={})
        await client.get("/no/such/path")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    counts = {
        (s.labels["type"], s.labels["success"], s.labels["scheduler"]): s.value
        for s in families["parsec_durations"].samples
        if s.name == "parsec_durations_count"
    }
    assert counts == {
        ("provide_duration", "true", "optprov"): 1,
        ("retrieval_ttfpr", "true", "optprov"): 2,
        ("retrieval_ttfpr", "false", ""): 1,
    }
    quantiles = {
        s.labels["quantile"]
        for s in families["parsec_durations"].samples
        if s.name == "parsec_durations"
    }
    assert quantiles == {"0.5", "0.9", "0.99"}

    requests = {
        (s.labels["method"], s.labels["path"], s.labels["scheduler"]): s.value
        for s in families["parsec_http_requests"].samples
        if s.name == "parsec_http_requests_total"
    }
    assert requests == {
        ("POST", "/provide", "optprov"): 1,
        ("POST", "/retrieve", "optprov"): 2,  # the original's label: the first path segment
        ("POST", "/retrieve", ""): 2,  # the unparsable CID is counted under its route too
        ("GET", "unmatched", ""): 1,
        ("GET", "/metrics", ""): 1,
    }


async def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = create_app(FakeBackend(), make_settings()), create_app(FakeBackend(), make_settings())
    await _post(first, "/provide", json={"Content": b64(CONTENT)})
    async with client_for(second) as client:
        text = (await client.get("/metrics")).text
    assert "parsec_durations_count" not in text


async def test_default_loop_is_trio() -> None:
    import sniffio

    assert sniffio.current_async_library() == "trio"
