"""``parsec health HOST:PORT`` as the Go parsec's: OK and 0 when /readiness is 200, one line
and 1 otherwise (not ready, nobody listening)."""

from __future__ import annotations

from parsec.cli import main

from .conftest import FakeBackend, make_settings
from .live import live_server


def test_ready_not_ready_and_nobody_there(capsys):
    with live_server(FakeBackend(ready=True), make_settings()) as url:
        assert main(["health", url.removeprefix("http://")]) == 0
        assert capsys.readouterr().out.strip() == "OK"
    with live_server(FakeBackend(ready=False), make_settings()) as url:
        address = url.removeprefix("http://")
        assert main(["health", address]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"parsec health: http://{address}/readiness: status code: 503"
    assert main(["health", address, "--timeout", "2"]) == 1  # the server is gone now
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"parsec health: http://{address}/readiness: ")
