"""The windowed summary (quantiles, expiry, memory cap) and the server's metric set."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from parsec.server.metrics import (
    DEFAULT_MAX_AGE,
    OTHER_LABEL,
    PROVIDE_DURATION,
    RETRIEVAL_TTFPR,
    ServerMetrics,
    WindowedSummary,
    nearest_rank,
)


class VirtualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LABELS = {"type": PROVIDE_DURATION, "success": "true", "scheduler": "s"}


def _summary(clock: VirtualClock, **kwargs) -> WindowedSummary:
    return WindowedSummary("d", "doc", ("type", "success", "scheduler"), clock=clock, **kwargs)


def _samples(summary: WindowedSummary) -> dict[tuple[str, tuple], float]:
    (metric,) = summary.collect()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in metric.samples}


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [nearest_rank(values, q) for q in (0.5, 0.9, 0.99)] == [50.0, 90.0, 99.0]
    assert nearest_rank([3.0], 0.01) == 3.0
    assert nearest_rank([1.0, 2.0], 0.5) == 1.0
    assert math.isnan(nearest_rank([], 0.5))


def test_quantiles_of_known_inputs_in_any_order() -> None:
    summary = _summary(VirtualClock())
    values = list(range(1, 101))
    random.Random(5).shuffle(values)
    for value in values:
        summary.observe(value, **LABELS)
    assert summary.quantile_values(**LABELS) == {0.5: 50.0, 0.9: 90.0, 0.99: 99.0}
    samples = _samples(summary)
    labels = tuple(sorted(LABELS.items()))
    assert samples[("d_count", labels)] == 100
    assert samples[("d_sum", labels)] == 5050
    assert samples[("d", tuple(sorted({**LABELS, "quantile": "0.9"}.items())))] == 90.0


def test_label_sets_are_independent() -> None:
    summary = _summary(VirtualClock())
    failed = {**LABELS, "success": "false"}
    summary.observe(1.0, **LABELS)
    summary.observe(7.0, **failed)
    assert summary.quantile_values(**LABELS)[0.5] == 1.0
    assert summary.quantile_values(**failed)[0.5] == 7.0


def test_max_age_expiry_with_a_virtual_clock() -> None:
    clock = VirtualClock()
    summary = _summary(clock)
    for value in (100.0, 200.0, 300.0):
        summary.observe(value, **LABELS)
    clock.advance(DEFAULT_MAX_AGE - 1)
    summary.observe(1.0, **LABELS)
    assert summary.quantile_values(**LABELS)[0.99] == 300.0  # all still inside 24 h
    clock.advance(2)  # the first three are now older than 24 h
    assert summary.quantile_values(**LABELS) == {0.5: 1.0, 0.9: 1.0, 0.99: 1.0}
    clock.advance(DEFAULT_MAX_AGE)
    assert all(math.isnan(v) for v in summary.quantile_values(**LABELS).values())
    samples = _samples(summary)
    labels = tuple(sorted(LABELS.items()))
    assert samples[("d_count", labels)] == 4  # count and sum stay cumulative, as in client_golang
    assert samples[("d_sum", labels)] == 601.0


def test_memory_is_capped_per_label_set() -> None:
    summary = _summary(VirtualClock(), max_samples=5)
    for value in range(1, 11):
        summary.observe(value, **LABELS)
    assert summary.quantile_values(**LABELS) == {0.5: 8.0, 0.9: 10.0, 0.99: 10.0}  # window 6..10
    assert _samples(summary)[("d_count", tuple(sorted(LABELS.items())))] == 10


def test_wrong_labels_and_bad_configuration_are_rejected() -> None:
    summary = _summary(VirtualClock())
    with pytest.raises(ValueError, match="labels must be exactly"):
        summary.observe(1.0, type=PROVIDE_DURATION)
    with pytest.raises(ValueError):
        _summary(VirtualClock(), quantiles=(0.5, 1.0))
    with pytest.raises(ValueError):
        _summary(VirtualClock(), max_age=0)


def _families(metrics: ServerMetrics) -> dict:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def test_exposition_parses_with_quantiles_count_sum_and_request_counter() -> None:
    clock = VirtualClock()
    metrics = ServerMetrics(clock=clock)
    for ms in range(1, 11):
        metrics.observe_operation(RETRIEVAL_TTFPR, ms / 1000, success=True, scheduler="default")
    metrics.observe_operation(PROVIDE_DURATION, 2.5, success=False, scheduler=None)
    metrics.count_request("POST", "/retrieve/{cid}", "default")
    metrics.count_request("post", "/retrieve/{cid}", "default")

    families = _families(metrics)
    durations = families["parsec_durations"]
    assert durations.type == "summary"
    ttfpr = {"type": RETRIEVAL_TTFPR, "success": "true", "scheduler": "default"}
    by_quantile = {
        s.labels["quantile"]: s.value
        for s in durations.samples
        if s.name == "parsec_durations" and {k: s.labels[k] for k in ttfpr} == ttfpr
    }
    assert by_quantile == {"0.5": 0.005, "0.9": 0.009, "0.99": 0.01}
    count = {s.name: s.value for s in durations.samples if s.labels == ttfpr}
    assert count["parsec_durations_count"] == 10
    assert count["parsec_durations_sum"] == pytest.approx(0.055)
    provide = [s for s in durations.samples if s.labels.get("type") == PROVIDE_DURATION]
    assert {s.labels["success"] for s in provide} == {"false"}
    assert {s.labels["scheduler"] for s in provide} == {""}  # no header: empty label

    requests = families["parsec_http_requests"]
    assert requests.type == "counter"
    (total,) = [s for s in requests.samples if s.name == "parsec_http_requests_total"]
    assert total.labels == {"method": "POST", "path": "/retrieve/{cid}", "scheduler": "default"}
    assert total.value == 2


def test_each_instance_has_its_own_registry() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.count_request("GET", "/readiness", "a")
    assert "parsec_http_requests_total" in first.render()[0].decode()
    assert "parsec_http_requests_total{" not in second.render()[0].decode()


def test_client_supplied_labels_are_bounded() -> None:
    metrics = ServerMetrics(max_schedulers=2)
    assert metrics.scheduler_label("a") == "a"
    assert metrics.scheduler_label("b") == "b"
    assert metrics.scheduler_label("c") == OTHER_LABEL
    assert metrics.scheduler_label("a") == "a"
    assert len(ServerMetrics().scheduler_label("x" * 1000)) == 64
    metrics.count_request("BREW", "unmatched", "a")
    (sample,) = [
        s
        for s in _families(metrics)["parsec_http_requests"].samples
        if s.name == "parsec_http_requests_total"
    ]
    assert sample.labels["method"] == OTHER_LABEL


def test_unknown_operation_type_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown operation type"):
        ServerMetrics().observe_operation("lookup", 1.0, success=True, scheduler="")
