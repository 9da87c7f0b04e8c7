"""What a server reports about where it runs: ECS first, then the Ray node, then the machine."""

from parsec.config import ServerSettings
from parsec.server import nodeinfo

ECS = {"Limits": {"CPU": 2, "Memory": 4096},
       "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.7"]}]}


def test_ray_node_facts_from_its_resources():
    node = nodeinfo.ray_node_from("n1", "10.1.1.10", {"CPU": 4.0, "memory": 3 * (1 << 30),
                                                     "region:us-west-1": 1.0, "node:10.1.1.10": 1.0})
    assert (node.region, node.cpu, node.memory_mb, node.ip) == ("us-west-1", 4, 3072, "10.1.1.10")
    assert nodeinfo.region_from_resources({"region:a": 1, "region:b": 1}) is None  # ambiguous: not guessed
    assert nodeinfo.region_from_resources({"CPU": 1}) is None


def test_resources_prefer_ecs_then_ray_node():
    node = nodeinfo.ray_node_from("n1", "10.1.1.10", {"CPU": 4.0, "memory": 2 * (1 << 30)})
    assert nodeinfo.resources(ECS, node) == (2, 4096, "10.0.3.7")
    assert nodeinfo.resources(None, node) == (4, 2048, None)
    cpu, memory, _ = nodeinfo.resources(None, None)
    assert (cpu, memory) == nodeinfo.machine_resources()


def test_region_order(monkeypatch):
    node = nodeinfo.ray_node_from("n1", "10.1.1.10", {"region:ap-south-1": 1.0})
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert nodeinfo.region(node) == "ap-south-1" and nodeinfo.region(None) == "local"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    assert nodeinfo.region(node) == "sa-east-1"


def test_advertised_address_is_never_the_wildcard():
    node = nodeinfo.ray_node_from("n1", "10.1.1.10", {})
    wildcard = ServerSettings(server_host="0.0.0.0")
    assert nodeinfo.advertised_ip(wildcard, None, node) == "10.1.1.10"
    assert nodeinfo.advertised_ip(wildcard, "10.0.3.7", node) == "10.0.3.7"
    assert nodeinfo.advertised_ip(wildcard) == "127.0.0.1"
    assert nodeinfo.advertised_ip(ServerSettings(server_host="127.0.0.2"), None, node) == "127.0.0.2"
    assert nodeinfo.advertised_ip(ServerSettings(advertise_host="192.0.2.1", server_host="0.0.0.0")) == "192.0.2.1"
