"""The scheduler's write-ahead journal: no issued operation lost, none stored twice.

A campaign runs for weeks: Postgres restarts, the scheduler is SIGKILLed, and the Parquet
writer holds rows in memory until it publishes a file. Every one of those would lose
measurements if the records lived only in memory between the server's answer and the
sinks. The journal is a JSON-lines file, fsync'd at every append, holding per operation:

- ``issued``  written *before* its HTTP request leaves (op_id, node, round, CID, time);
- ``record``  the measurement once known (success, error, cancelled);
- ``pg`` / ``pq``  which op_ids Postgres / a published Parquet file now hold.

An operation is *settled* once its record is in every sink this run writes; settled
operations leave the file at the next compaction (a rewrite of the unsettled ones under a
temporary name, then an atomic rename). With ``archive`` the entries of settled operations
are appended to ``<journal>.archive`` instead of dropped (audits; ``bench/chaos.py``
counts the operations issued from it).

Replaying a journal (``open``) returns the unsettled operations: one issued but never
recorded was in flight when the process died, and the caller records it as an error
(``Intent.killed_record``); one recorded but not in a sink is written again — Postgres
skips op_ids it holds; for Parquet the caller checks the files first
(``parquet.published_op_ids``), as a crash may fall between a file's rename and its ``pq``
line. A torn last line (a crash mid-append) is ignored: its fsync never returned, so what
it announced never happened.

One process owns a journal at a time (an exclusive ``flock`` on ``<journal>.lock``, a file
of its own because compaction replaces the journal's inode).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from parsec.store.records import FIELDS, MeasurementRecord

log = logging.getLogger("parsec.store.journal")

SCHEDULER_KILLED = "scheduler killed: the scheduler process ended before the server's answer was recorded"
SINKS = ("pg", "pq")


class JournalBusy(RuntimeError):
    """Another process holds the journal (a second scheduler of the same fleets and database)."""


@dataclass(frozen=True, slots=True)
class Intent:
    """An operation about to be issued: enough to record it even if its answer never comes."""

    op_id: str
    kind: str
    scheduler_id: int
    node_id: int
    fleet: str
    region: str
    round: int
    cid: str
    issued_at: datetime  # timezone-aware

    def killed_record(self) -> MeasurementRecord:
        """The record of an operation whose scheduler died while it was in flight: its
        result is unknown, so it is an error; duration 0 (unknown), dated when issued."""
        return MeasurementRecord(
            op_id=self.op_id, kind=self.kind, scheduler_id=self.scheduler_id, node_id=self.node_id,
            fleet=self.fleet, region=self.region, round=self.round, rt_size=0, duration=0.0, cid=self.cid,
            error=SCHEDULER_KILLED, step=self.kind, created_at=self.issued_at,
        )


_INTENT_FIELDS = tuple(f.name for f in fields(Intent))


@dataclass
class Operation:
    """What the journal knows of one operation."""

    intent: Intent | None = None
    record: MeasurementRecord | None = None
    stored: set[str] = field(default_factory=set)  # of SINKS

    def settled(self, sinks: Iterable[str]) -> bool:
        return self.record is not None and all(sink in self.stored for sink in sinks)


def _encode(kind: str, values: dict) -> str:
    doc = {"e": kind}
    for name, value in values.items():
        doc[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(doc, separators=(",", ":"))


def _intent_of(doc: dict) -> Intent:
    values = {name: doc[name] for name in _INTENT_FIELDS}
    values["issued_at"] = datetime.fromisoformat(values["issued_at"])
    return Intent(**values)


def _record_of(doc: dict) -> MeasurementRecord:
    values = {name: doc.get(name) for name in FIELDS}
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return MeasurementRecord(**values)


class Journal:
    """One scheduler loop's journal at ``path``; ``sinks``: the sinks an operation must reach."""

    def __init__(self, path: Path, *, sinks: Iterable[str] = SINKS, archive: bool = False,
                 compact_lines: int = 1000) -> None:
        self.path = Path(path)
        self.sinks = tuple(sinks)
        unknown = set(self.sinks) - set(SINKS)
        if unknown:
            raise ValueError(f"unknown sinks {sorted(unknown)}; known: {', '.join(SINKS)}")
        self.archive_path = self.path.with_name(self.path.name + ".archive") if archive else None
        self.compact_lines = compact_lines
        self.ops: dict[str, Operation] = {}  # unsettled, in order of first appearance
        self._settled: dict[str, Operation] = {}  # settled since the last compaction (for the archive)
        self._lines = 0  # lines in the file now
        self._file = None
        self._lock = None

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> dict[str, Operation]:
        """Take the lock, replay the file; returns the unsettled operations (op_id → state)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock()
        self.ops = {}
        self._replay()
        self._compact()  # start from a file holding the unsettled operations only
        return dict(self.ops)

    def close(self) -> None:
        """Compact (settled entries leave) and release the lock; a journal left with
        nothing unsettled (and no archive) is removed with its lock file."""
        if self._file is not None:
            self._compact()
            self._file.close()
            self._file = None
            if not self.ops and self.archive_path is None:
                self.path.unlink(missing_ok=True)
                self._lock_path.unlink(missing_ok=True)  # still locked: see _take_lock
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _take_lock(self):
        """An exclusive flock on the lock file, which must still be the one at its path
        (an owner that finished may have removed it after we opened it)."""
        for _ in range(10):
            lock = open(self._lock_path, "a+")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                owner = lock.read().strip() or "unknown"
                lock.close()
                raise JournalBusy(f"the spool {self.path} is in use by another scheduler (pid {owner}); "
                                  "give this one its own PARSEC_SCHEDULER_SPOOL_DIR") from None
            try:
                same = os.stat(self._lock_path).st_ino == os.fstat(lock.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                lock.seek(0)
                lock.truncate()
                lock.write(str(os.getpid()))
                lock.flush()
                return lock
            lock.close()
        raise JournalBusy(f"could not lock the spool {self.path}: its lock file keeps being replaced")

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- appends (each fsync'd before returning) ------------------------------------------

    def issued(self, intent: Intent) -> None:
        """Write down an operation before it is issued."""
        self._append([_encode("issued", {name: getattr(intent, name) for name in _INTENT_FIELDS})])
        self.ops.setdefault(intent.op_id, Operation()).intent = intent

    def recorded(self, records: list[MeasurementRecord]) -> None:
        """Write down measurements before any sink sees them."""
        if not records:
            return
        self._append([_encode("record", record.as_dict()) for record in records])
        for record in records:
            self.ops.setdefault(record.op_id, Operation()).record = record

    def stored(self, sink: str, op_ids: Iterable[str]) -> None:
        """These operations' records are in ``sink`` now; settled ones leave at compaction."""
        if sink not in SINKS:
            raise ValueError(f"unknown sink {sink!r}")
        known = [op_id for op_id in op_ids if op_id in self.ops]
        if not known:
            return
        self._append([_encode(sink, {"ids": known})])
        for op_id in known:
            op = self.ops[op_id]
            op.stored.add(sink)
            if op.settled(self.sinks):
                self._settled[op_id] = self.ops.pop(op_id)
        if not self.ops or (self._lines >= self.compact_lines and len(self._settled) >= len(self.ops)):
            self._compact()

    def pending(self, sink: str) -> list[MeasurementRecord]:
        """Records not yet in ``sink``, oldest first."""
        return [op.record for op in self.ops.values() if op.record is not None and sink not in op.stored]

    # -- file plumbing -------------------------------------------------------------------

    def _append(self, lines: list[str]) -> None:
        if self._file is None:
            raise RuntimeError(f"journal {self.path} is not open")
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._lines += len(lines)

    def _replay(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        torn = lines.pop() if lines else ""  # text after the last newline: an append cut short
        if torn:
            log.warning("journal %s: ignoring a torn last line (%d bytes)", self.path, len(torn))
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                log.warning("journal %s line %d unreadable, skipped: %s", self.path, number, error)

    def _apply(self, doc: dict) -> None:
        kind = doc["e"]
        if kind == "issued":
            intent = _intent_of(doc)
            self.ops.setdefault(intent.op_id, Operation()).intent = intent
            return
        if kind == "record":
            record = _record_of(doc)
            self.ops.setdefault(record.op_id, Operation()).record = record
            touched = [record.op_id]
        elif kind in SINKS:
            touched = [op_id for op_id in doc["ids"] if op_id in self.ops]
            for op_id in touched:
                self.ops[op_id].stored.add(kind)
        else:
            raise ValueError(f"unknown entry {kind!r}")
        for op_id in touched:
            if self.ops[op_id].settled(self.sinks):
                self._settled[op_id] = self.ops.pop(op_id)

    def _lines_of(self, op: Operation) -> list[str]:
        lines = []
        if op.intent is not None:
            lines.append(_encode("issued", {name: getattr(op.intent, name) for name in _INTENT_FIELDS}))
        if op.record is not None:
            lines.append(_encode("record", op.record.as_dict()))
            lines += [_encode(sink, {"ids": [op.record.op_id]}) for sink in SINKS if sink in op.stored]
        return lines

    def _compact(self) -> None:
        """Rewrite the file with the unsettled operations only (settled ones to the archive)."""
        if self.archive_path is not None and self._settled:
            with self.archive_path.open("a", encoding="utf-8") as archive:
                archive.write("".join(line + "\n" for op in self._settled.values() for line in self._lines_of(op)))
                archive.flush()
                os.fsync(archive.fileno())
        self._settled = {}
        lines = [line for op in self.ops.values() for line in self._lines_of(op)]
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        if self._file is not None:
            self._file.close()
        temporary.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._file = self.path.open("a", encoding="utf-8")
        self._lines = len(lines)


def _entries(source: Path):
    """The readable entries of a journal file, without its lock (its owner may be appending)."""
    if not source.exists():
        return
    for line in source.read_text(encoding="utf-8").split("\n"):
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # empty or torn
        if isinstance(doc, dict):
            yield doc


def read_issued(path: Path) -> dict[str, Intent]:
    """Every operation a journal and its archive say was issued (op_id → intent), for audits."""
    path = Path(path)
    return {doc["op_id"]: _intent_of(doc) for source in (path.with_name(path.name + ".archive"), path)
            for doc in _entries(source) if doc.get("e") == "issued"}


def read_in_flight(path: Path) -> list[Intent]:
    """Operations a running scheduler's journal holds as issued and not yet answered."""
    docs = list(_entries(Path(path)))
    recorded = {doc["op_id"] for doc in docs if doc.get("e") == "record"}
    return [_intent_of(doc) for doc in docs if doc.get("e") == "issued" and doc["op_id"] not in recorded]
