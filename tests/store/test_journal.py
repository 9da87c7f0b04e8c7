"""The scheduler's journal as a file: what a crash leaves is replayed, settled operations
leave, a torn last line is ignored, one owner at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from parsec.store.journal import SCHEDULER_KILLED, Intent, Journal, JournalBusy, read_issued
from parsec.store.records import MeasurementRecord

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def intent(n: int, kind: str = "retrieval") -> Intent:
    return Intent(op_id=f"{n:032x}", kind=kind, scheduler_id=7, node_id=3, fleet="default", region="eu-central-1",
                  round=n, cid="QmCid", issued_at=NOW)


def record(n: int, error: str | None = None) -> MeasurementRecord:
    return MeasurementRecord(op_id=f"{n:032x}", kind="retrieval", scheduler_id=7, node_id=3, fleet="default",
                             region="eu-central-1", round=n, rt_size=40, duration=0.25, cid="QmCid", error=error,
                             step="retrieval", created_at=NOW, trace='{"rpc_total":3}')


def abandon(journal: Journal) -> None:
    """What a SIGKILL leaves: the file as appended so far, no compaction, the lock gone."""
    journal._file.close()
    journal._lock.close()


def test_settled_operations_leave_and_a_clean_close_removes_the_files(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    assert journal.open() == {}
    journal.issued(intent(1))
    journal.recorded([record(1)])
    journal.stored("pg", [record(1).op_id])
    assert list(journal.ops) == [record(1).op_id] and len(path.read_text().splitlines()) == 3
    journal.stored("pq", [record(1).op_id])
    assert journal.ops == {} and path.read_text() == ""  # compacted as soon as nothing is open
    journal.close()
    assert not path.exists() and not (tmp_path / "j.jsonl.lock").exists()


def test_replay_returns_what_a_killed_process_left(tmp_path):
    path = tmp_path / "j.jsonl"
    first = Journal(path)
    first.open()
    for n in (1, 2, 3):
        first.issued(intent(n))
    first.recorded([record(1), record(2, error="not found")])
    first.stored("pg", [record(1).op_id, record(2).op_id])
    first.stored("pq", [record(1).op_id])
    abandon(first)

    second = Journal(path)
    ops = second.open()
    assert list(ops) == [record(2).op_id, record(3).op_id]  # 1 is settled
    assert ops[record(2).op_id].record == record(2, error="not found") and ops[record(2).op_id].stored == {"pg"}
    assert ops[record(3).op_id].record is None and ops[record(3).op_id].intent == intent(3)
    assert [r.op_id for r in second.pending("pq")] == [record(2).op_id]
    assert second.pending("pg") == []
    killed = ops[record(3).op_id].intent.killed_record()
    assert killed.error == SCHEDULER_KILLED and killed.created_at == NOW and killed.duration == 0.0
    second.close()


def test_a_real_process_killed_mid_append_leaves_a_readable_journal(tmp_path):
    """A child process appends, then dies with os._exit (no close, no compaction) after
    writing half a line: the torn line is ignored, the rest replayed."""
    path = tmp_path / "j.jsonl"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from tests.store.test_journal import intent, record
        from parsec.store.journal import Journal
        j = Journal({str(path)!r}); j.open()
        j.issued(intent(1)); j.recorded([record(1)]); j.issued(intent(2))
        j._file.write('{{"e":"record","op_id":"00'); j._file.flush()
        os._exit(9)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    journal = Journal(path)
    ops = journal.open()
    assert list(ops) == [record(1).op_id, record(2).op_id]
    assert ops[record(1).op_id].record == record(1) and ops[record(2).op_id].record is None
    journal.close()


def test_one_owner_at_a_time(tmp_path):
    path = tmp_path / "j.jsonl"
    owner = Journal(path)
    owner.open()
    with pytest.raises(JournalBusy, match="in use by another scheduler"):
        Journal(path).open()
    owner.close()
    with Journal(path) as again:
        assert again.ops == {}


def test_journal_without_parquet_settles_on_postgres_alone(tmp_path):
    journal = Journal(tmp_path / "j.jsonl", sinks=("pg",))
    journal.open()
    journal.issued(intent(1))
    journal.recorded([record(1)])
    journal.stored("pg", [record(1).op_id])
    assert journal.ops == {}
    journal.close()


def test_compaction_keeps_the_file_bounded_while_operations_stay_open(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_lines=50)
    journal.open()
    journal.issued(intent(0))  # in flight all along: the file never empties by itself
    for n in range(1, 200):
        journal.issued(intent(n))
        journal.recorded([record(n)])
        journal.stored("pg", [record(n).op_id])
        journal.stored("pq", [record(n).op_id])
    assert list(journal.ops) == [record(0).op_id]
    assert len(path.read_text().splitlines()) <= 50
    journal.close()
    assert Journal(path).open().keys() == {record(0).op_id}


def test_archive_keeps_every_issued_operation_for_audits(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, archive=True, compact_lines=10)
    journal.open()
    for n in range(30):
        journal.issued(intent(n))
        if n % 10:  # every tenth stays in flight
            journal.recorded([record(n)])
            journal.stored("pg", [record(n).op_id])
            journal.stored("pq", [record(n).op_id])
    abandon(journal)
    assert set(read_issued(path)) == {intent(n).op_id for n in range(30)}
    assert path.exists()


def test_unreadable_lines_are_skipped_not_fatal(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.open()
    journal.issued(intent(1))
    journal._file.write("not json\n")
    journal.issued(intent(2))
    abandon(journal)
    assert list(Journal(path).open()) == [intent(1).op_id, intent(2).op_id]
    assert "unreadable" in caplog.text
