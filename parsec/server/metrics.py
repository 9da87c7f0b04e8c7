"""Prometheus metrics of a parsec server, with the names and labels of the Go original.

``parsec_durations`` is a summary *with quantiles* (0.5, 0.9, 0.99) over a 24 h window,
like client_golang's ``SummaryOpts{Objectives, MaxAge}``. prometheus_client's ``Summary``
exports no quantiles, so :class:`WindowedSummary` is a small custom collector: it keeps
``(time, value)`` per label set in a capped deque, drops entries older than ``max_age``
and computes exact nearest-rank quantiles when scraped. As in client_golang, ``_count`` and
``_sum`` are cumulative over the process lifetime; only the quantiles are windowed.

Each app gets its own ``CollectorRegistry`` (several servers can share a process, e.g.
tests or a testbed), and label values that come from clients are bounded so a scheduler
sending odd headers or methods cannot grow the series count without limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_QUANTILES",
    "OTHER_LABEL",
    "PROVIDE_DURATION",
    "RETRIEVAL_TTFPR",
    "ServerMetrics",
    "WindowedSummary",
    "nearest_rank",
]

Clock = Callable[[], float]

DEFAULT_QUANTILES = (0.5, 0.9, 0.99)
DEFAULT_MAX_AGE = 24 * 3600.0
DEFAULT_MAX_SAMPLES = 20_000
"""Per label set. One probe a minute is 1,440 a day; the cap only bites under load tests."""

PROVIDE_DURATION = "provide_duration"
RETRIEVAL_TTFPR = "retrieval_ttfpr"
OTHER_LABEL = "other"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_MAX_SCHEDULER_LABEL = 64


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile: an observed value, NaN for no data (as client_golang)."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q * len(sorted_values) - 1e-9)  # the epsilon keeps 0.9*100 at rank 90
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


class _Window:
    """Observations of one label set: a time-ordered capped deque plus lifetime totals."""

    __slots__ = ("entries", "count", "total")

    def __init__(self, max_samples: int) -> None:
        self.entries: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self.count = 0
        self.total = 0.0

    def expire(self, cutoff: float) -> None:
        while self.entries and self.entries[0][0] < cutoff:
            self.entries.popleft()


class WindowedSummary(Collector):
    """A Prometheus summary whose quantiles cover the last ``max_age`` seconds.

    Memory is bounded by ``max_samples`` per label set (the oldest go first when full).
    ``clock`` is injectable so tests can drive expiry with a virtual clock; it must not go
    backwards (the default is ``time.monotonic``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        max_age: float = DEFAULT_MAX_AGE,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        clock: Clock = time.monotonic,
    ) -> None:
        if not all(0.0 < q < 1.0 for q in quantiles):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        if max_age <= 0 or max_samples < 1:
            raise ValueError("max_age must be positive and max_samples at least 1")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.quantiles = tuple(quantiles)
        self.max_age = max_age
        self.max_samples = max_samples
        self._clock = clock
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._lock = threading.Lock()  # scrapes may come from another thread than observers

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation for the label set given by keyword (all labels required)."""
        key = self._key(labels)
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(self.max_samples)
            window.expire(now - self.max_age)
            window.entries.append((now, float(value)))
            window.count += 1
            window.total += float(value)

    def quantile_values(self, **labels: str) -> dict[float, float]:
        """The current windowed quantiles of one label set (NaN when it has none)."""
        key = self._key(labels)
        with self._lock:
            window = self._windows.get(key)
            values = self._window_values(window) if window else []
        return {q: nearest_rank(values, q) for q in self.quantiles}

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, "summary")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "summary")
        with self._lock:
            snapshot = [
                (key, self._window_values(window), window.count, window.total)
                for key, window in sorted(self._windows.items())
            ]
        for key, values, count, total in snapshot:
            labels = dict(zip(self.labelnames, key))
            for q in self.quantiles:
                metric.add_sample(self.name, {**labels, "quantile": repr(q)}, nearest_rank(values, q))
            metric.add_sample(f"{self.name}_count", labels, float(count))
            metric.add_sample(f"{self.name}_sum", labels, total)
        return [metric]

    def _window_values(self, window: _Window) -> list[float]:
        """Sorted values still inside the window; call with the lock held."""
        window.expire(self._clock() - self.max_age)
        return sorted(value for _, value in window.entries)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"labels must be exactly {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)


class ServerMetrics:
    """The server's metrics in their own registry: operation durations and HTTP requests.

    Callers pass raw header values and methods; they are bounded here: the ``scheduler``
    label is cut to 64 characters and, beyond ``max_schedulers`` distinct values, becomes
    ``other``; unknown HTTP methods become ``other`` as well.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        max_age: float = DEFAULT_MAX_AGE,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_schedulers: int = 32,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.durations = WindowedSummary(
            "parsec_durations",
            "Duration of provides and time to first provider record of retrievals, in seconds.",
            ("type", "success", "scheduler"),
            max_age=max_age,
            max_samples=max_samples,
            clock=clock,
        )
        self.registry.register(self.durations)
        self.http_requests = Counter(
            "parsec_http_requests",
            "HTTP requests served, by method, route template and scheduler.",
            ("method", "path", "scheduler"),
            registry=self.registry,
        )
        self._max_schedulers = max_schedulers
        self._schedulers: set[str] = set()
        self._schedulers_lock = threading.Lock()

    def scheduler_label(self, header: str | None) -> str:
        """The bounded ``scheduler`` label for an ``x-scheduler-id`` header value."""
        value = (header or "")[:_MAX_SCHEDULER_LABEL]
        with self._schedulers_lock:
            if value in self._schedulers:
                return value
            if len(self._schedulers) >= self._max_schedulers:
                return OTHER_LABEL
            self._schedulers.add(value)
            return value

    def observe_operation(self, kind: str, seconds: float, *, success: bool, scheduler: str | None) -> None:
        """One provide (``provide_duration``) or retrieval (``retrieval_ttfpr``) measurement."""
        if kind not in (PROVIDE_DURATION, RETRIEVAL_TTFPR):
            raise ValueError(f"unknown operation type {kind!r}")
        self.durations.observe(
            seconds,
            type=kind,
            success="true" if success else "false",
            scheduler=self.scheduler_label(scheduler),
        )

    def count_request(self, method: str, path: str, scheduler: str | None) -> None:
        """One HTTP request; ``path`` must already be a route template (bounded set)."""
        method = method.upper() if method.upper() in _KNOWN_METHODS else OTHER_LABEL
        self.http_requests.labels(method=method, path=path, scheduler=self.scheduler_label(scheduler)).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for ``GET /metrics``.

        Announced as text format 0.0.4 (what prometheus_client itself serves to scrapers
        that send no ``Accept``): every Prometheus version parses it, and our metric names
        need no escaping.
        """
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
