"""Fleet planning and settings (pure): names, placements, region checks, bad input."""

import pytest

from parsec.cluster.fleet import FleetSettings, missing_regions, parse_actor_name, plan_fleet
from parsec.config import load


def test_plan_is_per_region_and_names_round_trip():
    plan = plan_fleet("optprov", ["eu-central-1", "us-west-1"], 2)
    assert [(p.name, p.region) for p in plan] == [
        ("fleet:optprov:eu-central-1:0", "eu-central-1"), ("fleet:optprov:eu-central-1:1", "eu-central-1"),
        ("fleet:optprov:us-west-1:0", "us-west-1"), ("fleet:optprov:us-west-1:1", "us-west-1")]
    assert [parse_actor_name(p.name) for p in plan][2] == ("optprov", "us-west-1", 0)
    assert parse_actor_name("demo-default-0") is None and parse_actor_name("fleet:a:b:x") is None


def test_missing_regions_are_those_no_node_offers():
    resources = {"CPU": 4.0, "region:eu-central-1": 1.0, "region:us-west-1": 2.0}
    assert missing_regions(["eu-central-1", "ap-south-1", "us-west-1"], resources) == ["ap-south-1"]


def test_settings_from_env_and_bad_input(monkeypatch):
    monkeypatch.setenv("PARSEC_FLEET_REGIONS", "eu-central-1,us-west-1")
    settings = load(FleetSettings, fleet="fullrt")
    assert settings.regions == ["eu-central-1", "us-west-1"] and settings.servers_per_region == 1
    for bad in ({"fleet": "nope"}, {"regions": "eu-central-1,eu-central-1"}, {"regions": "region:x"},
                {"servers_per_region": 0}):
        with pytest.raises(SystemExit) as info:
            load(FleetSettings, **bad)
        assert "PARSEC_FLEET_" in str(info.value)


def test_the_placement_region_wins_over_a_node_offering_several(monkeypatch):
    """A server placed for us-east-2 on a Ray node offering several region:* resources
    registers us-east-2, with a peer id that WAN emulation puts in us-east-2 (before: the
    node's region was ambiguous and the peer id's own region won)."""
    from libp2p.peer.id import ID

    from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings
    from parsec.cluster.fleet import server_config
    from parsec.server.nodeinfo import ray_node_from
    from parsec.server.runtime import ServerRuntime

    monkeypatch.delenv("AWS_REGION", raising=False)
    node = ray_node_from("n1", "127.0.0.1", {"CPU": 2.0, "region:ap-south-1": 1.0, "region:us-east-2": 1.0})
    assert node.region is None  # ambiguous on its own
    network = NetworkSettings(network="testbed", latency_matrix="default")
    config = server_config("fleet:default:us-east-2:0", "default", "us-east-2", ServerSettings(), network,
                           DatabaseSettings(), ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"])
    assert config.server.region == "us-east-2" and config.server.fleet == "default"
    for _ in range(5):
        runtime = ServerRuntime(config.server, config.network, config.database, bootstrap=[], ray_node=node)
        peer = ID.from_pubkey(runtime._key.public_key).to_bytes()
        assert runtime.region == "us-east-2" and runtime.latency.region_of(peer) == "us-east-2"
