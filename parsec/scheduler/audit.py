"""Did every operation a scheduler issued end up exactly once in Postgres and in Parquet?

The journal (with ``PARSEC_SCHEDULER_SPOOL_ARCHIVE``) names every operation before it was
issued, independently of the sinks, so it is the count to check them against: an op_id
missing from a sink is *lost*, a second row of one op_id is a *duplicate*. Used by the
fault tests and ``bench/chaos.py``. Rows of an op_id the journal never saw are counted
too (``unaccounted``): a sink must hold nothing that was not issued.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from parsec.config import DatabaseSettings
from parsec.store.db import Repository, connect_pool
from parsec.store.journal import read_issued
from parsec.store.parquet import read_dataset


@dataclass
class Audit:
    issued: int
    postgres_rows: int
    parquet_rows: int
    duplicates_postgres: int
    duplicates_parquet: int
    lost_postgres: int
    lost_parquet: int
    unaccounted: int  # rows (either sink) of an op_id the journal never saw issued
    errors: dict[str, int] = field(default_factory=dict)  # error text (first 60 chars) → rows, from Postgres
    schedulers: list[int] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_postgres + self.lost_parquet

    @property
    def duplicates(self) -> int:
        return self.duplicates_postgres + self.duplicates_parquet

    def as_dict(self) -> dict:
        return {**asdict(self), "lost": self.lost, "duplicates": self.duplicates}


async def audit(database: DatabaseSettings, journal: Path, parquet_dir: Path | None) -> Audit:
    """Compare the operations ``journal`` (and its archive) says were issued with the rows
    of their schedulers in Postgres and the rows in ``parquet_dir``."""
    issued = read_issued(journal)
    schedulers = sorted({intent.scheduler_id for intent in issued.values()})
    pool = await connect_pool(database)
    try:
        rows = await Repository(pool).scheduler_operations(schedulers)
    finally:
        await pool.close()
    in_postgres = Counter(row["op_id"] for row in rows)
    errors = Counter((row["error"] or "")[:60] for row in rows if row["error"] is not None)
    frame = read_dataset(parquet_dir) if parquet_dir is not None and Path(parquet_dir).exists() else None
    in_parquet = Counter(frame["op_id"]) if frame is not None else Counter()
    return Audit(
        issued=len(issued),
        postgres_rows=len(rows),
        parquet_rows=sum(in_parquet.values()),
        duplicates_postgres=sum(n - 1 for op, n in in_postgres.items() if op is not None),
        duplicates_parquet=sum(n - 1 for n in in_parquet.values()),
        lost_postgres=sum(1 for op_id in issued if op_id not in in_postgres),
        lost_parquet=sum(1 for op_id in issued if op_id not in in_parquet) if parquet_dir is not None else 0,
        unaccounted=sum(n for op_id, n in (in_postgres + in_parquet).items() if op_id not in issued),
        errors=dict(errors.most_common()),
        schedulers=schedulers,
    )
