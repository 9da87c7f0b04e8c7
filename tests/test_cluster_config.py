"""cluster.yaml (AWS) and cluster-onprem.yaml (local provider), checked offline with Ray's
own launcher code: `ray up` has no dry run, so prepare_config + validate_config (the same
schema and defaults `ray up` applies) are the test, plus the promises the files make —
a region resource per node type, token auth, nothing but SSH and libp2p open, no secrets."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
FILES = ["cluster.yaml", "cluster-onprem.yaml"]
DATABASE_NAMES = [f"PARSEC_DATABASE_{name}" for name in ("HOST", "PORT", "NAME", "USER", "PASSWORD", "SSL_MODE")]


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", FILES)
def test_ray_accepts_the_cluster_config(name):
    config = prepare_config(_load(name))
    validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize(("resources", "message", "where"), [
    ("region:eu-central-1", "'region:eu-central-1' is not of type 'object'", []),
    ({"region:eu-central-1": -1}, "-1 is less than the minimum of 0", ["region:eu-central-1"]),
    ({"region:eu-central-1": 1.5}, "1.5 is not of type 'integer'", ["region:eu-central-1"]),
])
def test_validation_is_not_a_rubber_stamp(resources, message, where):
    broken = copy.deepcopy(_load("cluster.yaml"))
    broken["available_node_types"]["head"]["resources"] = resources
    with pytest.raises(jsonschema.ValidationError) as caught:
        validate_config(prepare_config(broken))
    assert caught.value.message == message
    assert list(caught.value.absolute_path) == ["available_node_types", "head", "resources", *where]


def test_aws_node_types_each_declare_one_region():
    config = prepare_config(_load("cluster.yaml"))
    region = config["provider"]["region"]
    for name, node_type in config["available_node_types"].items():
        regions = [key for key in node_type["resources"] if key.startswith("region:")]
        assert regions == [f"region:{region}"], name  # the AWS launcher creates every node in provider.region
        assert node_type["node_config"]["ImageId"]


def test_aws_launcher_code_loads_with_boto3():
    """`ray up` on AWS imports Ray's AWS provider, which needs boto3 (a pinned test extra)."""
    from ray.autoscaler._private.providers import _get_node_provider_cls

    provider = _get_node_provider_cls(_load("cluster.yaml")["provider"])
    assert provider.__name__ == "AWSNodeProvider"


def test_only_ssh_and_libp2p_are_open_to_the_internet():
    rules = _load("cluster.yaml")["provider"]["security_group"]["IpPermissions"]
    public = [r for r in rules if any(ip["CidrIp"] == "0.0.0.0/0" for ip in r.get("IpRanges", []))]
    assert [(r["FromPort"], r["ToPort"]) for r in public] == [(4001, 4010)]  # Ray adds intra-cluster + SSH itself


@pytest.mark.parametrize("name", FILES)
def test_nodes_start_through_ray_node_sh_with_token_auth_and_a_private_dashboard(name):
    config = _load(name)
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "scripts/ray-node.sh head" in commands and "scripts/ray-node.sh worker" in commands
    assert "0.0.0.0" not in commands and "--dashboard-host" not in commands  # the script pins 127.0.0.1
    script = (REPO / "scripts" / "ray-node.sh").read_text()
    assert "RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}" in script
    assert "--dashboard-host 127.0.0.1" in script
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("name", FILES)
def test_database_comes_from_a_mounted_env_file_not_the_yaml(name):
    text = (REPO / name).read_text()
    config = _load(name)
    assert config["file_mounts"]["~/parsec.env"] == "./parsec.env"
    assert not re.search(r"PARSEC_DATABASE_PASSWORD\s*=", text)
    example = (REPO / "parsec.env.example").read_text()
    assert all(f"{var}=" in example for var in DATABASE_NAMES)
    assert "parsec.env" in (REPO / ".gitignore").read_text().split()


@pytest.mark.parametrize("name", FILES)
def test_setup_installs_this_project(name):
    config = _load(name)
    assert config["file_mounts"]["~/parsec"] == "."
    assert any("scripts/setup.sh" in command for command in config["setup_commands"])
