"""Fleet planning and settings (pure): names, placements, region checks, bad input."""

import pytest

from parsec.config import load
from parsec.fleet import FleetSettings, missing_regions, parse_actor_name, plan_fleet


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
