"""The WAN latency model shared by the py, Go and Node testbed peers."""

import json
import os
import random
import statistics

import pytest

from parsec.model.latency import LatencyModel


def test_default_matrix_is_the_published_one():
    model = LatencyModel.load()
    a, b = model.index("eu-central-1"), model.index("sa-east-1")
    assert model.rtt(a, b) == pytest.approx(0.205)
    assert model.one_way(a, b) == pytest.approx(0.1025)
    assert model.dial_delay(a, b) == pytest.approx(2 * 0.205)
    assert all(model.rtt_ms[i][j] == model.rtt_ms[j][i] for i in range(8) for j in range(8))


def test_regions_follow_weights_and_are_a_function_of_the_peer_id():
    model = LatencyModel.load()
    ids = [os.urandom(34) for _ in range(7000)]
    counts = {region: 0 for region in model.regions}
    for peer in ids:
        counts[model.region_of(peer)] += 1
    assert counts["us-east-1"] == 0  # weight 0: the database region holds no peers
    assert all(800 < counts[r] < 1200 for r in model.regions if r != "us-east-1")
    assert [model.region_of(p) for p in ids[:50]] == [model.region_of(p) for p in ids[:50]]


def test_jitter_spreads_around_the_median():
    model = LatencyModel.load(jitter=0.1)
    rng = random.Random(1)
    samples = [model.one_way(3, 7, rng) for _ in range(4000)]
    assert statistics.median(samples) == pytest.approx(0.1025, rel=0.02)
    p90 = sorted(samples)[int(0.9 * len(samples))]
    assert 1.05 < p90 / 0.1025 < 1.2  # p90 5-20 % above p50, as the public data shows


def test_bad_files_are_readable_errors(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"regions": ["a", "b"], "rtt_ms": [[1, 2]]}))
    with pytest.raises(ValueError, match="2x2"):
        LatencyModel.load(bad)
    with pytest.raises(ValueError, match="cannot read"):
        LatencyModel.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown region"):
        LatencyModel.load().index("mars-1")


def test_a_cut_off_region_drops_every_message_to_or_from_it_until_restored():
    import pickle

    model = LatencyModel.load()
    rng = random.Random(2)
    eu, ap, us = model.index("eu-central-1"), model.index("ap-south-1"), model.index("us-west-1")
    shipped = pickle.loads(pickle.dumps(model))  # what an actor receives: an outage of its own
    model.cut_off(["ap-south-1"])
    assert model.cut_regions() == ["ap-south-1"]
    assert model.dropped(rng, eu, ap) and model.dropped(rng, ap, eu) and model.dropped(rng, ap, ap)
    assert not any(model.dropped(rng, eu, us) for _ in range(100))  # no loss configured elsewhere
    assert not shipped.dropped(rng, eu, ap) and shipped == model  # the outage is no part of the model's value
    model.cut_off([])
    assert not model.dropped(rng, eu, ap)
    with pytest.raises(ValueError, match="unknown region"):
        model.cut_off(["mars-1"])
