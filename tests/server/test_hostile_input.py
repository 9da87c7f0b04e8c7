"""Hostile and sloppy clients against a real hypercorn serving the app: property-based
requests generated from ``server.yaml`` (schemathesis, bounded), oversized request heads,
clients that go silent, floods beyond the operation limit, and the bearer token."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .conftest import FakeBackend, b64, make_settings
from .live import live_server

SPEC = Path(__file__).resolve().parents[2] / "server.yaml"
TOKEN = "token-for-the-hostile-input-tests"
schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture(scope="module")
def guarded_url():
    """A server that requires the token, with small limits so generated input hits them."""
    server = make_settings(auth_token=TOKEN, max_concurrent_operations=4, body_timeout=2.0)
    with live_server(FakeBackend(), server) as url:
        yield url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_never_5xx_and_conform(case, guarded_url):
    """Every generated request (valid and invalid, with and without the token) gets a documented
    status with a body and headers that validate against server.yaml — never a 5xx."""
    authorised = hash(str(case.body) + case.formatted_path) % 2 == 0
    headers = {"authorization": f"Bearer {TOKEN}"} if authorised else None
    response = case.call(base_url=guarded_url, headers=headers, timeout=10)
    assert response.status_code < 500, response.text
    # Every check but "schema-valid data is accepted": a string that matches the spec's `cid`
    # (any string) or `Content` (any base64) can still be no CID / too big — the spec
    # documents those answers (400, 413); OpenAPI cannot express multibase/multihash validity.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def _raw(url: str, data: bytes, *, read_for: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes; what the server answers, and whether it closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_for) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            pass
        return b"".join(chunks), True


def test_an_oversized_request_head_is_refused():
    with live_server(FakeBackend(), make_settings(max_header_bytes=4096)) as url:
        answer, _ = _raw(url, b"GET /readiness HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n", read_for=2)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        split, closed = _raw(url, b"GET /readiness HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
                             read_for=2)  # more than one read: hypercorn's own bound cuts it off
        assert split.startswith(b"HTTP/1.1 4") or (closed and split == b""), split[:80]
        ok, _ = _raw(url, b"GET /readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Small: aaa\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")


def test_a_client_that_goes_silent_mid_head_is_dropped():
    with live_server(FakeBackend(), make_settings(idle_timeout=0.5)) as url:
        start = time.monotonic()
        answer, closed = _raw(url, b"POST /provide HTTP/1.1\r\nHost: x\r\nContent-Le", read_for=10)
        assert closed and answer == b""
        assert time.monotonic() - start < 5


def test_a_head_trickled_byte_by_byte_is_dropped():
    """Each byte resets no timer: the whole head must arrive within the idle timeout."""
    head = b"GET /readiness HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    with live_server(FakeBackend(), make_settings(idle_timeout=0.5)) as url:
        host, port = url.removeprefix("http://").split(":")
        start = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            with pytest.raises(OSError):  # broken pipe / reset once the server has closed
                for byte in head:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
                    if sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                        raise ConnectionResetError("closed by the server")
        assert time.monotonic() - start < 3


def test_a_body_trickled_too_slowly_is_408():
    backend = FakeBackend()
    with live_server(backend, make_settings(body_timeout=1.5)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /provide HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            for _ in range(4):  # one byte every 0.3 s: never silent for long, never done
                time.sleep(0.3)
                sock.sendall(b" ")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert backend.calls == []


def test_operations_beyond_the_limit_are_429_with_retry_after_and_nothing_starts():
    backend = FakeBackend(delay=1.0)
    with live_server(backend, make_settings(max_concurrent_operations=3, retry_after=7)) as url:
        with httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_connections=20)) as client:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: client.post("/provide", json={"Content": b64(bytes([i]))}), range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 3 + [429] * 5
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["retry-after"] == "7"
            assert "limit 3" in answer.json()["error"]
    assert len(backend.calls) == 3


@pytest.mark.parametrize("token", [None, TOKEN])
def test_bearer_token_on_and_off(token):
    backend = FakeBackend()
    with live_server(backend, make_settings(auth_token=token)) as url, httpx.Client(base_url=url, timeout=10) as client:
        cid_path = "/retrieve/QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp"
        anonymous = [client.post("/provide", json={"Content": b64(b"x")}), client.post(cid_path, json={})]
        wrong = client.post("/provide", json={"Content": b64(b"x")}, headers={"authorization": "Bearer " + "x" * 33})
        right = client.post("/provide", json={"Content": b64(b"x")}, headers={"authorization": f"Bearer {TOKEN}"})
        open_routes = [client.get("/readiness").status_code, client.get("/metrics").status_code]
    assert open_routes == [200, 200]
    if token is None:
        assert [a.status_code for a in anonymous] == [200, 200]
        return
    assert [a.status_code for a in anonymous] == [401, 401]
    assert all(a.headers["www-authenticate"].startswith("Bearer") for a in anonymous)
    assert all(a.headers["connection"] == "close" for a in anonymous)  # the unread body ends the connection
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid bearer token"
    assert right.status_code == 200
    assert len(backend.calls) == 1  # only the authorised request reached the DHT


def _as_the_go_scheduler_reads(answer: httpx.Response) -> list[dict]:
    """What the Go scheduler stores from an answer: it never looks at the status code,
    decodes the body as a measurement reply and stores each of its Measurements."""
    body = answer.json()
    return [m for m in body.get("Measurements") or [] if isinstance(m, dict)]


@pytest.mark.parametrize("refusal", ["token", "busy"])
def test_a_go_scheduler_stores_a_refusal_as_a_failed_measurement(refusal):
    """401 and 429 on the operation paths carry one failed measurement (Duration 0, Error
    'HTTP <status>: …'), so a scheduler that ignores status codes records them, not nothing."""
    backend = FakeBackend(delay=0.5)
    settings = make_settings(auth_token=TOKEN) if refusal == "token" else make_settings(max_concurrent_operations=1)
    cid = "QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp"
    headers = {"authorization": f"Bearer {TOKEN}"} if refusal == "busy" else {}
    with live_server(backend, settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        if refusal == "busy":
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                first = pool.submit(client.post, "/provide", json={"Content": b64(b"a")}, headers=headers)
                time.sleep(0.2)
                answers = [client.post("/provide", json={"Content": b64(b"b")}),
                           client.post(f"/retrieve/{cid}", json={})]
                first.result()
        else:
            answers = [client.post("/provide", json={"Content": b64(b"b")}), client.post(f"/retrieve/{cid}", json={})]
        others = [client.get("/readiness"), client.get("/nowhere")]
    status = 401 if refusal == "token" else 429
    assert [a.status_code for a in answers] == [status, status]
    provide, retrieve = answers
    for answer, step, expected_cid in ((provide, "provide", ""), (retrieve, "retrieval", cid)):
        [measurement] = _as_the_go_scheduler_reads(answer)
        assert measurement["Duration"] == 0 and measurement["Step"] == step
        assert measurement["Error"] == f"HTTP {status}: {answer.json()['error']}"
        assert answer.json()["CID"] == expected_cid and answer.json()["RoutingTableSize"] == 0
    assert others[0].status_code == 200 and "Measurements" not in others[0].json()
    assert others[1].status_code == 404 and "Measurements" not in others[1].json()
