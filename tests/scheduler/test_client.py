"""Parsing server answers (ours and the Go original's) and turning failures into data."""

import asyncio

import pytest

from parsec.scheduler.client import ServerClient, node_url, parse_measurement


def test_parse_our_and_go_shapes():
    ours = {"CID": "QmX", "Measurements": [{"Step": "retrieval", "Duration": 1_500_000_000, "Error": ""}],
            "RoutingTableSize": 42}
    reply = parse_measurement(ours, "retrieval", "QmX")
    assert (reply.step, reply.duration_s, reply.error, reply.rt_size) == ("retrieval", 1.5, None, 42)
    go = {"CID": "QmX", "Measurements": [{"Step": "", "Duration": 10, "Error": "not found"}], "RoutingTableSize": 0}
    reply = parse_measurement(go, "retrieval", "QmX")
    assert reply.step == "retrieval" and reply.error == "not found"


def test_every_measurement_of_a_multi_step_reply_is_kept():
    """A Go IPNI server answers a provide with one measurement per step; all are kept, in order."""
    ipni = {"CID": "QmX", "RoutingTableSize": 7, "Measurements": [
        {"Step": "provide", "Duration": 2_000_000_000, "Error": ""},
        {"Step": "availability", "Duration": 500_000_000, "Error": "not announced"},
    ]}
    reply = parse_measurement(ipni, "provide", "QmX")
    assert [(r.step, r.duration_s, r.error, r.rt_size, r.cid) for r in reply.all()] == [
        ("provide", 2.0, None, 7, "QmX"), ("availability", 0.5, "not announced", 7, "QmX")]


@pytest.mark.parametrize("body", [None, [], {}, {"Measurements": []}, {"Measurements": [{"Duration": -1}]},
                                  {"Measurements": [{"Duration": "5"}]}, {"Measurements": [{"Duration": 1, "Error": 3}]},
                                  {"Measurements": [{"Duration": 1}, {"Duration": -1}]},
                                  {"Measurements": [{"Duration": 1}, "x"]}])
def test_parse_rejects_non_contract_bodies(body):
    with pytest.raises(ValueError):
        parse_measurement(body, "provide", "QmX")


def test_node_url_brackets_ipv6():
    assert node_url("10.0.0.1", 7070) == "http://10.0.0.1:7070"
    assert node_url("::1", 7070) == "http://[::1]:7070"


async def _with_server(handler, call):
    """A real HTTP server on loopback (asyncio, like the scheduler) answering with ``handler``."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        status, body = handler(scope)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # a request before hypercorn runs waits instead of being refused
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    await asyncio.sleep(0.2)
    try:
        return await call(f"http://127.0.0.1:{port}")
    finally:
        stop.set()
        await server


def test_failures_come_back_as_replies_with_errors():
    def handler(scope):
        if scope["path"] == "/readiness":
            return 503, b'{"ready": false}'
        return 500, b'{"error": "boom"}'

    async def call(base):
        client = ServerClient("7", timeout=5, readiness_timeout=1)
        try:
            return await client.ready(base), await client.provide(base, b"x", "QmCid"), await client.ready("http://127.0.0.1:1")
        finally:
            await client.aclose()

    ready, reply, unreachable = asyncio.run(_with_server(handler, call))
    assert ready is False and unreachable is False
    assert reply.error.startswith("HTTP 500") and reply.cid == "QmCid" and reply.http_status == 500


def test_connection_refused_is_recorded_not_raised():
    async def main():
        client = ServerClient("7", timeout=2)
        try:
            return await client.retrieve("http://127.0.0.1:1", "QmCid")
        finally:
            await client.aclose()

    reply = asyncio.run(main())
    assert "scheduler HTTP error" in reply.error and reply.step == "retrieval"
