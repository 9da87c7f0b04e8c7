"""Ports a server chooses fit the original's nodes_ecs (SMALLINT); configured ones above it
are refused in one line that names the setting."""

from __future__ import annotations

import random
import socket

import pytest

from parsec.config import ServerSettings, load
from parsec.net import ports


def test_port_0_is_a_free_port_of_the_chosen_range():
    socks = [ports.bind_tcp("127.0.0.1", 0) for _ in range(20)]
    try:
        chosen = [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(ports.CHOSEN_RANGE[0] <= port <= ports.CHOSEN_RANGE[1] for port in chosen), chosen
    assert len(set(chosen)) == len(chosen)


def test_a_taken_port_is_skipped():
    first = random.Random(7).sample(range(ports.CHOSEN_RANGE[0], ports.CHOSEN_RANGE[1] + 1), 1)[0]
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", first))
    except OSError:
        pytest.skip(f"port {first} is in use on this machine")
    blocker.listen(1)
    try:
        sock = ports.bind_tcp("127.0.0.1", 0, rng=random.Random(7))
        port = sock.getsockname()[1]
        sock.close()
    finally:
        blocker.close()
    assert port != first and ports.CHOSEN_RANGE[0] <= port <= ports.CHOSEN_RANGE[1]


def test_free_port_can_then_be_bound():
    port = ports.free_port("127.0.0.1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.close()
    assert ports.CHOSEN_RANGE[0] <= port <= ports.CHOSEN_RANGE[1]


def test_a_given_port_that_is_taken_is_an_error_not_another_port():
    blocker = ports.bind_tcp("127.0.0.1", 0)
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        with pytest.raises(OSError):
            ports.bind_tcp("127.0.0.1", taken, reuse_address=False)
    finally:
        blocker.close()


@pytest.mark.parametrize("setting", ["server_port", "peer_port"])
def test_a_configured_port_above_32767_is_one_line_naming_the_setting(setting):
    with pytest.raises(SystemExit) as caught:
        load(ServerSettings, **{setting: 40001})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting: PARSEC_SERVER_{setting.upper()}: above 32767")
    assert "-25535" in message  # what a Go scheduler would read


def test_32767_and_0_are_accepted():
    assert load(ServerSettings, server_port=32767, peer_port=0).server_port == 32767
