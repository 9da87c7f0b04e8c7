"""Where a scheduler's records go: Postgres, Parquet, or both at once.

One ``Sink`` interface with several back-ends (as nebula does): the scheduler hands each
batch to a fan-out, and every back-end receives the very same records, which is what lets
the tests check Postgres and Parquet agree one to one.
"""

from __future__ import annotations

from typing import Protocol

from parsec.store.records import MeasurementRecord


class Sink(Protocol):
    async def write(self, records: list[MeasurementRecord]) -> None: ...
    async def flush(self) -> None: ...


class PostgresSink:
    """Batches go to provides_ecs / retrievals_ecs (+ measurements) via COPY."""

    def __init__(self, repo) -> None:
        self.repo = repo
        self.written = 0

    async def write(self, records: list[MeasurementRecord]) -> None:
        self.written += await self.repo.write_measurements(records)

    async def flush(self) -> None:
        return None


class ParquetDatasetSink:
    """Appends to the hive-partitioned Parquet dataset; files rotate so readers see them."""

    def __init__(self, writer) -> None:
        self.writer = writer

    async def write(self, records: list[MeasurementRecord]) -> None:
        self.writer.write(records)

    async def flush(self) -> None:
        self.writer.close()


class FanOutSink:
    """Every record to every sink, in order."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    async def write(self, records: list[MeasurementRecord]) -> None:
        for sink in self.sinks:
            await sink.write(records)

    async def flush(self) -> None:
        for sink in self.sinks:
            await sink.flush()
