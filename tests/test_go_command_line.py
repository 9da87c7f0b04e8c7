"""The Go parsec's command line and settings, accepted as they are (issue 16): `server dht`
and `ipni`, global `--db-*` flags, free-text fleet labels with the strategy from the Go
settings, help text on every option."""

from __future__ import annotations

import argparse

import pytest

from parsec import cli
from parsec.config import ServerSettings, load


@pytest.mark.parametrize(("given", "strategy"), [
    ({}, "default"),
    ({"fleet": "optprov"}, "optprov"),  # our labels that name a strategy keep meaning it
    ({"fleet": "eu-optprov-2026", "dht_optprov": True}, "optprov"),  # Go: free-text label + setting
    ({"fleet": "fullrt-test", "dht_fullrt": True}, "fullrt"),
    ({"fleet": "anything at all"}, "default"),
    ({"fleet": "x", "strategy": "js"}, "js"),
    ({"fleet": "x", "strategy": "fullrt", "dht_fullrt": True}, "fullrt"),
])
def test_strategy_follows_the_go_settings_then_the_label(given, strategy, monkeypatch):
    for name in ("PARSEC_SERVER_FLEET", "PARSEC_SERVER_STRATEGY", "PARSEC_SERVER_DHT_OPTPROV", "PARSEC_SERVER_DHT_FULLRT"):
        monkeypatch.delenv(name, raising=False)
    settings = load(ServerSettings, **given)
    assert settings.strategy == strategy and settings.fleet == given.get("fleet", "default")


def test_the_go_environment_names(monkeypatch):
    monkeypatch.setenv("PARSEC_SERVER_FLEET", "probelab-optprov")
    monkeypatch.setenv("PARSEC_SERVER_DHT_OPTPROV", "true")
    settings = load(ServerSettings)
    assert (settings.fleet, settings.strategy) == ("probelab-optprov", "optprov")


@pytest.mark.parametrize(("given", "words"), [
    ({"dht_optprov": True, "dht_fullrt": True}, "both true"),
    ({"strategy": "default", "dht_fullrt": True}, "contradicts"),
    ({"strategy": "nope"}, "unknown strategy 'nope'"),
    ({"fleet": ""}, "PARSEC_SERVER_FLEET"),
    ({"dht_alpha": 3}, "PARSEC_SERVER_DHT_ALPHA: only 10"),
    ({"dht_project": "filecoin"}, "PARSEC_SERVER_DHT_PROJECT: only 'ipfs'"),
    ({"dht_denied_cids": "denied.txt"}, "PARSEC_SERVER_DHT_DENIED_CIDS: not supported"),
    ({"firehose_stream": "s"}, "PARSEC_SERVER_FIREHOSE_STREAM: not supported"),
    ({"strategy": "pylibp2p", "dht_server_mode": False}, "a DHT client is one of default, optprov, fullrt"),
])
def test_settings_that_cannot_both_hold_are_one_line(given, words, monkeypatch):
    for name in ("PARSEC_SERVER_DHT_OPTPROV", "PARSEC_SERVER_DHT_FULLRT", "PARSEC_SERVER_STRATEGY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as caught:
        load(ServerSettings, **given)
    message = str(caught.value)
    assert "\n" not in message and words in message


def test_server_dht_and_ipni_parse_as_in_the_go_parsec(capsys):
    args = cli.build_parser().parse_args(["server", "--fleet", "my-label", "--server-port", "7071", "dht", "--optprov"])
    assert (args.command, args.server_kind, args.fleet, args.server_port, args.optprov) == (
        "server", "dht", "my-label", 7071, True)
    plain = cli.build_parser().parse_args(["server", "--fleet", "default"])
    assert plain.server_kind is None  # `parsec server` alone is a DHT server
    assert cli.main(["server", "ipni"]) == 2
    assert capsys.readouterr().err.strip() == (
        "parsec server ipni: not supported yet: parsec runs DHT servers only (`parsec server dht`)")


def test_a_go_server_command_line_is_accepted_as_written(monkeypatch):
    """A Go deployment's whole `server` line, `=false` booleans and unused Firehose/LevelDB
    flags included, gives the settings it means."""
    for name in ("PARSEC_SERVER_DHT_OPTPROV", "PARSEC_SERVER_DHT_FULLRT", "PARSEC_SERVER_STRATEGY",
                 "PARSEC_SERVER_DHT_SERVER_MODE"):
        monkeypatch.delenv(name, raising=False)
    seen = {}
    monkeypatch.setattr(cli, "cmd_server", lambda args: seen.setdefault("args", args) and 0)
    line = ["server", "--server-host", "0.0.0.0", "--server-port", "7070", "--peer-port", "4001", "--fleet",
            "eu-central-1-client", "--level-db", "./leveldb", "--firehose-region", "us-east-1",
            "--firehose-connection-events=false", "--startup-delay", "1m", "dht", "--server-mode=false",
            "--optprov=true", "--alpha", "10", "--project", "ipfs"]
    assert cli.main(line) == 0
    args = seen["args"]
    dht = {f"dht_{name}": getattr(args, name) for name in cli._GO_DHT_SETTINGS}
    settings = load(ServerSettings, fleet=args.fleet, leveldb=args.level_db, **dht)
    assert (settings.strategy, settings.dht_server_mode, settings.serves_dht) == ("optprov", False, False)
    assert args.firehose_connection_events is False and args.startup_delay == "1m"
    assert load(ServerSettings).serves_dht  # unset: a DHT server, parsec's default


def test_global_db_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("PARSEC_DATABASE_HOST", "from-env")
    monkeypatch.setenv("PARSEC_DATABASE_NAME", "from-env")
    monkeypatch.setenv("PARSEC_DATABASE_PORT", "5432")  # so it is restored after the test, whatever the flags set
    args = cli.build_parser().parse_args(["--db-host", "db.example", "--db-port", "6543", "health", "x:1"])
    cli._apply_db_flags(args)
    from parsec.config import DatabaseSettings

    settings = load(DatabaseSettings)
    assert (settings.host, settings.port, settings.name) == ("db.example", 6543, "from-env")


def _options(parser: argparse.ArgumentParser, path: str = "parsec"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and action.dest != "help":
            yield path, action


def test_every_option_of_every_command_has_help_text():
    missing = [f"{path} {'/'.join(action.option_strings)}" for path, action in _options(cli.build_parser())
               if not (action.help or "").strip()]
    assert missing == []


def test_scheduler_metrics_under_the_go_names():
    """parsec_issued_provides / _retrievals exactly as the Go scheduler exports them (no
    _total, which prometheus_client would add to a counter), parsec_active_nodes a gauge."""
    from datetime import datetime, timezone

    from prometheus_client import generate_latest

    from parsec.scheduler.loop import SchedulerMetrics
    from parsec.store.records import MeasurementRecord

    def record(kind, error):
        return MeasurementRecord(op_id="0" * 32, kind=kind, scheduler_id=1, node_id=1, fleet="default", region="local",
                                 round=1, rt_size=0, duration=0.1, cid="Qm", error=error, step=kind,
                                 created_at=datetime.now(timezone.utc))

    metrics = SchedulerMetrics()
    for kind, error in [("provide", None), ("provide", None), ("provide", "boom"), ("retrieval", None)]:
        metrics.count([record(kind, error)])
    metrics.count([record("provide", None), record("provide", "step two failed")])  # one operation, two steps
    metrics.active_nodes.set(3)
    text = generate_latest(metrics.registry).decode()
    lines = set(text.splitlines())
    assert {'parsec_issued_provides{success="true"} 2.0', 'parsec_issued_provides{success="false"} 2.0',
            'parsec_issued_retrievals{success="true"} 1.0', "parsec_active_nodes 3.0"} <= lines
    assert "_total" not in text


def test_the_scheduler_metrics_listener_follows_the_go_telemetry_settings(monkeypatch):
    from parsec.scheduler import job

    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    monkeypatch.delenv("PARSEC_TELEMETRY_PORT", raising=False)
    monkeypatch.delenv("PARSEC_TELEMETRY_HOST", raising=False)
    assert job.metrics_address(parser.parse_args([])) == (None, "localhost")
    monkeypatch.setenv("PARSEC_TELEMETRY_PORT", "6666")
    assert job.metrics_address(parser.parse_args([])) == (6666, "localhost")
    assert job.metrics_address(parser.parse_args(["--metrics-port", "9100"])) == (9100, "127.0.0.1")
