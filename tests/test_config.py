"""Settings: the original's env names and defaults, Go durations, readable validation."""

import pytest

from parsec.config import (
    AMINO_BOOTSTRAP,
    DatabaseSettings,
    NetworkSettings,
    SchedulerSettings,
    ServerSettings,
    load,
    parse_duration,
)


@pytest.mark.parametrize("text,seconds", [("1m", 60), ("1m30s", 90), ("250ms", 0.25), ("2h", 7200), ("5", 5), (0.5, 0.5)])
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "1x", "m", "1m 2s", "-"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_are_the_originals(monkeypatch):
    for name in ("HOST", "PORT", "NAME", "USER", "PASSWORD", "SSL_MODE"):
        monkeypatch.delenv(f"PARSEC_DATABASE_{name}", raising=False)
    db = DatabaseSettings()
    assert (db.host, db.port, db.name, db.user, db.password, db.ssl_mode) == (
        "localhost", 5432, "parsec", "parsec", "password", "disable")
    assert not db.host_given
    scheduler = SchedulerSettings()
    assert scheduler.fleets == ["default"] and scheduler.interval == 60 and scheduler.probes == 1


def test_env_names_and_cli_override(monkeypatch):
    monkeypatch.setenv("PARSEC_SCHEDULER_FLEETS", "default,fullrt")
    monkeypatch.setenv("PARSEC_SCHEDULER_INTERVAL", "1m30s")
    monkeypatch.setenv("PARSEC_SERVER_FLEET", "optprov")
    monkeypatch.setenv("PARSEC_DATABASE_HOST", "db.internal")
    assert load(SchedulerSettings).fleets == ["default", "fullrt"]
    assert load(SchedulerSettings, interval="5s", probes=None).interval == 5
    assert load(ServerSettings).fleet == "optprov"
    assert load(ServerSettings, fleet="fullrt").fleet == "fullrt"
    assert load(DatabaseSettings).host_given


def test_invalid_settings_exit_with_env_names(monkeypatch):
    monkeypatch.setenv("PARSEC_SCHEDULER_PROBES", "0")
    with pytest.raises(SystemExit) as exit_info:
        load(SchedulerSettings)
    assert "PARSEC_SCHEDULER_PROBES" in str(exit_info.value)
    with pytest.raises(SystemExit) as exit_info:
        load(ServerSettings, strategy="nope")  # fleet labels are free text; strategies are not
    assert "PARSEC_SERVER_STRATEGY" in str(exit_info.value) and "unknown strategy" in str(exit_info.value)


def test_password_never_in_repr_or_redacted():
    db = DatabaseSettings(password="s3cret")
    assert "s3cret" not in repr(db) and "s3cret" not in db.redacted()


def test_dsn_for_tcp_and_unix_socket():
    assert DatabaseSettings(host="h", port=1).dsn().startswith("postgresql://parsec:password@h:1/parsec")
    assert "?host=/tmp/sock&port=5432" in DatabaseSettings(host="/tmp/sock").dsn()


def test_network_protocol_and_bootstrap(tmp_path):
    assert NetworkSettings().protocol_id == "/ipfs/kad/1.0.0"
    assert NetworkSettings(protocol_prefix="/lan").protocol_id == "/lan/kad/1.0.0"
    with pytest.raises(SystemExit):
        load(NetworkSettings, protocol_prefix="lan/")
    assert NetworkSettings(network="amino").resolved_bootstrap() == list(AMINO_BOOTSTRAP)
    file = tmp_path / "boot.txt"
    file.write_text("/ip4/127.0.0.1/tcp/1/p2p/Qm1\n\n")
    assert NetworkSettings(bootstrap_file=file).resolved_bootstrap() == ["/ip4/127.0.0.1/tcp/1/p2p/Qm1"]
    assert NetworkSettings(bootstrap_peers="a,b").resolved_bootstrap() == ["a", "b"]


def test_production_networks_never_read_the_testbed_file(tmp_path, monkeypatch):
    """A testbed left running on the machine must not leak into a production server."""
    testbed_file = tmp_path / "bootstrap.txt"
    testbed_file.write_text("/ip4/127.0.0.1/tcp/1/p2p/QmTestbed\n")
    monkeypatch.setenv("PARSEC_BOOTSTRAP_FILE", str(testbed_file))
    monkeypatch.delenv("PARSEC_BOOTSTRAP_PEERS", raising=False)
    amino = load(NetworkSettings, prefix="PARSEC_", network="amino")
    assert amino.production and amino.protocol_id == "/ipfs/kad/1.0.0"
    assert amino.resolved_bootstrap() == list(AMINO_BOOTSTRAP) and amino.latency_model() is None
    assert load(NetworkSettings, prefix="PARSEC_", network="testbed").resolved_bootstrap() == [
        "/ip4/127.0.0.1/tcp/1/p2p/QmTestbed"]
    monkeypatch.delenv("PARSEC_BOOTSTRAP_FILE")
    with pytest.raises(SystemExit) as info:
        load(NetworkSettings, prefix="PARSEC_", network="custom", protocol_prefix="/lan")
    assert "needs PARSEC_BOOTSTRAP_PEERS" in str(info.value) and "PARSEC_?" not in str(info.value)
    lan = load(NetworkSettings, prefix="PARSEC_", network="custom", protocol_prefix="/lan", bootstrap_peers="/ip4/x")
    assert lan.protocol_id == "/lan/kad/1.0.0" and lan.resolved_bootstrap() == ["/ip4/x"]
    assert "PARSEC_BOOTSTRAP_PEERS" in lan.missing_bootstrap_hint() and "testbed" not in lan.missing_bootstrap_hint()


def test_auth_token_from_env_for_servers_and_schedulers(monkeypatch):
    token = "t" * 24
    monkeypatch.setenv("PARSEC_SERVER_AUTH_TOKEN", token)
    assert ServerSettings().auth_token.get_secret_value() == token
    assert SchedulerSettings().auth_token.get_secret_value() == token  # one variable for both sides
    monkeypatch.setenv("PARSEC_SCHEDULER_AUTH_TOKEN", "s" * 24)
    assert SchedulerSettings().auth_token.get_secret_value() == "s" * 24
    assert token not in repr(ServerSettings()) and token not in ServerSettings().model_dump_json()
    monkeypatch.setenv("PARSEC_SERVER_AUTH_TOKEN", "")
    assert ServerSettings().auth_token is None  # empty: no token


def test_a_too_short_token_is_refused_without_echoing_it(monkeypatch):
    monkeypatch.setenv("PARSEC_SERVER_AUTH_TOKEN", "short-secret")
    with pytest.raises(SystemExit) as caught:
        load(ServerSettings)
    message = str(caught.value)
    assert "PARSEC_SERVER_AUTH_TOKEN" in message and "16 characters" in message
    assert "short-secret" not in message


def test_the_http_api_listens_on_loopback_unless_asked(monkeypatch):
    monkeypatch.delenv("PARSEC_SERVER_SERVER_HOST", raising=False)
    assert ServerSettings().server_host == "127.0.0.1" and not ServerSettings().listens_everywhere
    assert ServerSettings(server_host="0.0.0.0").listens_everywhere
