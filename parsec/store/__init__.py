"""Where measurements go: PostgreSQL (the original's tables), Parquet, an embedded server.

Names are re-exported lazily: ``parsec.store.records`` is imported by everyone, and must not
drag in asyncpg, pyarrow and pandas with it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MeasurementRecord": "records",
    "StoreError": "db",
    "connect_pool": "db",
    "Repository": "db",
    "NodeInfo": "db",
    "NodeRow": "db",
    "MigrationError": "migrations",
    "apply_migrations": "migrations",
    "migrate_down": "migrations",
    "EmbeddedPostgres": "embedded",
    "ParquetSink": "parquet",
    "read_dataset": "parquet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
