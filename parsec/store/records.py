"""The records a scheduler writes: one per provide or retrieval measurement.

One record type serves every sink (Postgres, Parquet, the demo summary), so the sinks
cannot drift apart. ``op_id`` is the idempotency key: a record written twice (a retry
after a database outage) is stored once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["provide", "retrieval"]


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    op_id: str            # uuid4 hex, unique per measurement
    kind: Kind            # provide -> provides_ecs, retrieval -> retrievals_ecs
    scheduler_id: int
    node_id: int
    fleet: str
    region: str
    round: int            # the scheduler round this belongs to
    rt_size: int
    duration: float       # seconds (the server reports ns)
    cid: str
    error: str | None     # None on success, "not found", or the error text
    step: str             # "provide" | "retrieval" (as the server sent it)
    created_at: datetime  # timezone-aware, written by the scheduler
    trace: str | None = None  # JSON of the server's per-operation trace (RPCs, hops, …), if sent

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = tuple(field.name for field in dataclasses.fields(MeasurementRecord))
