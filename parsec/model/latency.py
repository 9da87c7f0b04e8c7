"""WAN latency by region for a loopback testbed: the model every implementation shares.

On loopback every RPC costs only CPU, so strategies that save round trips look no better
than those that don't. The testbed therefore gives every peer a region and delays what
peers send by a one-way latency taken from a region-pair round-trip matrix (default: the
public inter-region RTTs in ``data/region-rtt.json``).

The model, identical in the Python, Go and Node testbed programs:

- **Region of a peer** = a function of its peer id alone, so any process can compute any
  peer's region without a directory: ``u = first 8 bytes of sha256(peer id bytes) / 2**64``
  picks the region whose cumulative weight share first exceeds ``u``. A server that must
  sit in a given region draws identities until one maps there.
- **Messages**: each peer delays every kad message it *writes* (requests and responses)
  by ``rtt[a][b] / 2`` between its region ``a`` and the remote's ``b``, times a jitter
  factor ``max(0, 1 + jitter * N(0, 1))``; a message is dropped with probability ``loss``.
  A request/response pair thus costs one RTT.
- **Connection set-up**: the dialer waits ``dial_rtts * rtt`` before dialling (TCP
  handshake, Noise XX and multistream negotiation are ≈2 round trips; 2.0 by default).

- **Outage** (a runtime control for fault tests and ``bench/chaos.py``): while a region is
  cut off, every kad message to or from a peer of that region is dropped — between its own
  peers too: the region goes dark, so its peers' and servers' requests time out. TCP dials
  still connect (only messages are dropped), so routing tables survive the outage and
  heal at once when it ends. Each process holds its own ``Outage``; the testbed shard and
  server actors set theirs (``parsec.cluster.deploy.cut_off_regions``); Go and js peers ignore it.

Not modelled: bandwidth and serialisation delay, TCP slow start and congestion, packet
reordering, per-peer access links (residential peers), and queueing in the network —
only the propagation delay between regions, plus optional jitter and loss.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MATRIX = Path(__file__).parents[1] / "data" / "region-rtt.json"


class Outage:
    """The region indexes cut off right now, in this process (mutable: a frozen model holds
    one, and every peer of the process sharing the model sees a change at once)."""

    def __init__(self) -> None:
        self.regions: frozenset[int] = frozenset()  # replaced whole: atomic for reader threads


@dataclass(frozen=True)
class LatencyModel:
    regions: tuple[str, ...]
    rtt_ms: tuple[tuple[float, ...], ...]
    weights: tuple[float, ...]
    jitter: float = 0.0
    loss: float = 0.0
    dial_rtts: float = 2.0
    outage: Outage = field(default_factory=Outage, compare=False, repr=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.regions)
        if n == 0 or len(self.rtt_ms) != n or any(len(row) != n for row in self.rtt_ms):
            raise ValueError(f"the RTT matrix must be {n}x{n} for {n} regions")
        if len(self.weights) != n or any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
            raise ValueError("weights: one non-negative number per region, not all zero")
        if any(v < 0 for row in self.rtt_ms for v in row):
            raise ValueError("RTTs must be non-negative")
        if not 0 <= self.loss < 1 or self.jitter < 0 or self.dial_rtts < 0:
            raise ValueError("loss must be in [0, 1), jitter and dial_rtts >= 0")
        total = sum(self.weights)
        running, cumulative = 0.0, []
        for weight in self.weights:
            running += weight / total
            cumulative.append(running)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @classmethod
    def load(cls, path: Path | str | None = None, **overrides) -> LatencyModel:
        """Read a matrix file (JSON: regions, rtt_ms, weights, jitter, loss, dial_rtts)."""
        source = Path(path) if path else DEFAULT_MATRIX
        try:
            doc = json.loads(source.read_text())
            values = {
                "regions": tuple(doc["regions"]),
                "rtt_ms": tuple(tuple(float(v) for v in row) for row in doc["rtt_ms"]),
                "weights": tuple(float(w) for w in doc.get("weights") or [1.0] * len(doc["regions"])),
                "jitter": float(doc.get("jitter", 0.0)),
                "loss": float(doc.get("loss", 0.0)),
                "dial_rtts": float(doc.get("dial_rtts", 2.0)),
            }
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"cannot read latency matrix {source}: {error}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def index(self, region: str) -> int:
        try:
            return self.regions.index(region)
        except ValueError:
            raise ValueError(f"unknown region {region!r}; known: {', '.join(self.regions)}") from None

    def region_index_of(self, peer_id: bytes) -> int:
        u = int.from_bytes(hashlib.sha256(peer_id).digest()[:8], "big") / 2**64
        return min(bisect.bisect_right(self._cumulative, u), len(self.regions) - 1)

    def region_of(self, peer_id: bytes) -> str:
        return self.regions[self.region_index_of(peer_id)]

    def rtt(self, a: int, b: int) -> float:
        """Round-trip time in seconds between region indexes ``a`` and ``b``."""
        return self.rtt_ms[a][b] / 1000.0

    def one_way(self, a: int, b: int, rng: random.Random | None = None) -> float:
        """Seconds one message from region ``a`` to ``b`` takes (with jitter when set)."""
        base = self.rtt(a, b) / 2
        if self.jitter and rng is not None:
            return base * max(0.0, 1.0 + self.jitter * rng.gauss(0.0, 1.0))
        return base

    def dial_delay(self, a: int, b: int) -> float:
        return self.dial_rtts * self.rtt(a, b)

    def dropped(self, rng: random.Random, a: int | None = None, b: int | None = None) -> bool:
        """Whether a message from region ``a`` to ``b`` is lost: either end cut off, or loss."""
        cut = self.outage.regions
        if cut and (a in cut or b in cut):
            return True
        return self.loss > 0 and rng.random() < self.loss

    def cut_off(self, regions: Iterable[str]) -> None:
        """Cut these regions off (an empty list restores every region)."""
        self.outage.regions = frozenset(self.index(region) for region in regions)

    def cut_regions(self) -> list[str]:
        return [self.regions[i] for i in sorted(self.outage.regions)]

    def as_json(self) -> str:
        """The model as the Go and Node programs read it."""
        return json.dumps({"regions": list(self.regions), "rtt_ms": [list(r) for r in self.rtt_ms],
                           "weights": list(self.weights), "jitter": self.jitter, "loss": self.loss,
                           "dial_rtts": self.dial_rtts})
