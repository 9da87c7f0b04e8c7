"""The durable sink's logic without sockets: a scripted repository stands in for Postgres
(up, down, or refusing one record), the Parquet dataset is real files in a temporary
directory. Exactly-once is checked by op_id in both."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import asyncpg

from parsec.scheduler.sinks import DurableSink, journal_path
from parsec.store.journal import SCHEDULER_KILLED, Intent, Journal
from parsec.store.parquet import ParquetSink, read_dataset
from parsec.store.records import MeasurementRecord

RETRY = 0.01


class ScriptedRepo:
    """write_measurements as Postgres does it (idempotent by op_id), or as it fails."""

    def __init__(self) -> None:
        self.rows: dict[str, MeasurementRecord] = {}
        self.down = False
        self.refuse: set[str] = set()  # op_ids that violate a constraint
        self.calls = 0

    async def write_measurements(self, records):
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        if any(r.op_id in self.refuse for r in records):
            raise asyncpg.ForeignKeyViolationError("insert violates foreign key constraint")
        new = [r for r in records if r.op_id not in self.rows]
        self.rows.update((r.op_id, r) for r in new)
        return len(new)


def intent(n: int) -> Intent:
    return Intent(op_id=f"{n:032x}", kind="provide" if n % 3 == 0 else "retrieval", scheduler_id=1, node_id=1,
                  fleet="default", region="local", round=n // 3, cid=f"Qm{n}",
                  issued_at=datetime.now(timezone.utc))


def answered(i: Intent) -> MeasurementRecord:
    return MeasurementRecord(op_id=i.op_id, kind=i.kind, scheduler_id=1, node_id=1, fleet="default", region="local",
                             round=i.round, rt_size=30, duration=0.1, cid=i.cid, error=None, step=i.kind,
                             created_at=datetime.now(timezone.utc))


def open_sink(tmp_path, repo, writer_id="s1", flush_timeout=0.2):
    journal = Journal(tmp_path / "spool" / "j.jsonl")
    journal.open()
    parquet = ParquetSink(tmp_path / "parquet", rotate_rows=1000, rotate_seconds=3600, writer_id=writer_id)
    return DurableSink(journal, repo, parquet, retry_seconds=RETRY, flush_timeout=flush_timeout)


async def until(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def issue_and_answer(sink, numbers):
    records = []
    for n in numbers:
        i = intent(n)
        sink.issue(i)
        records.append(answered(i))
    await sink.write(records)
    return records


def parquet_ids(tmp_path) -> list[str]:
    return list(read_dataset(tmp_path / "parquet")["op_id"])


def test_postgres_outage_spools_and_writes_everything_once_it_is_back(tmp_path, capsys):
    async def run():
        repo = ScriptedRepo()
        sink = open_sink(tmp_path, repo)
        await sink.recover()
        await issue_and_answer(sink, range(3))
        await until(lambda: len(repo.rows) == 3)
        repo.down = True
        await issue_and_answer(sink, range(3, 9))
        await until(lambda: repo.calls >= 5)  # retried while down
        assert len(repo.rows) == 3 and sink.spooled() == 6
        repo.down = False
        await until(lambda: sink.spooled() == 0)
        await sink.flush()
        return repo

    repo = asyncio.run(run())
    assert sorted(repo.rows) == [intent(n).op_id for n in range(9)]
    assert sorted(parquet_ids(tmp_path)) == sorted(repo.rows)  # Parquet was written regardless
    out = capsys.readouterr().out
    assert "Postgres unreachable" in out and "Postgres is back" in out
    assert not (tmp_path / "spool" / "j.jsonl").exists()  # everything settled


def test_scheduler_sigkilled_next_start_records_in_flight_as_killed_and_the_rest_once(tmp_path):
    """The first sink dies without flushing: Parquet rows still buffered, Postgres down,
    one operation issued and unanswered. The next start leaves each op_id exactly once
    in both sinks."""
    async def first_life():
        repo = ScriptedRepo()
        sink = open_sink(tmp_path, repo, writer_id="s1")
        await sink.recover()
        await issue_and_answer(sink, range(2))
        await until(lambda: len(repo.rows) == 2)
        repo.down = True
        await issue_and_answer(sink, range(2, 4))
        sink.issue(intent(4))  # in flight at the kill
        sink._drainer.cancel()
        sink.journal._file.close()  # SIGKILL: no flush, the Parquet buffer is gone
        sink.journal._lock.close()
        repo.down = False
        return repo

    repo = asyncio.run(first_life())
    assert parquet_ids(tmp_path) == []

    async def second_life():
        sink = open_sink(tmp_path, repo, writer_id="s2")
        summary = await sink.recover()
        await until(lambda: sink.spooled() == 0)
        await sink.flush()
        return summary

    summary = asyncio.run(second_life())
    assert summary == {"killed": 1, "to_parquet": 5, "already_in_parquet": 0, "to_postgres": 3}
    ids = [intent(n).op_id for n in range(5)]
    assert sorted(repo.rows) == ids and sorted(parquet_ids(tmp_path)) == ids
    assert repo.rows[intent(4).op_id].error == SCHEDULER_KILLED


def test_recovery_does_not_repeat_a_parquet_file_published_just_before_the_kill(tmp_path):
    """The crash fell between the file's rename and its line in the journal."""
    async def first_life():
        repo = ScriptedRepo()
        sink = open_sink(tmp_path, repo)
        await sink.recover()
        sink.parquet.on_publish = None  # the journal never hears of the file
        await issue_and_answer(sink, range(4))
        sink.parquet.flush()
        await until(lambda: len(repo.rows) == 4)
        sink._drainer.cancel()
        sink.journal._file.close()
        sink.journal._lock.close()
        return repo

    repo = asyncio.run(first_life())
    assert len(parquet_ids(tmp_path)) == 4

    async def second_life():
        sink = open_sink(tmp_path, repo, writer_id="s2")
        summary = await sink.recover()
        await sink.flush()
        return summary

    summary = asyncio.run(second_life())
    assert summary["already_in_parquet"] == 4 and summary["to_parquet"] == 0
    assert sorted(parquet_ids(tmp_path)) == sorted(repo.rows) and len(repo.rows) == 4


def test_a_record_postgres_refuses_holds_back_only_itself_and_stays_spooled(tmp_path):
    async def run():
        repo = ScriptedRepo()
        repo.refuse = {intent(1).op_id}
        sink = open_sink(tmp_path, repo)
        await sink.recover()
        await issue_and_answer(sink, range(3))
        await until(lambda: len(repo.rows) == 2 and sink.rejected)
        await sink.flush()
        return repo, sink

    repo, sink = asyncio.run(run())
    assert sorted(repo.rows) == [intent(0).op_id, intent(2).op_id]
    assert list(sink.rejected) == [intent(1).op_id] and "ForeignKeyViolation" in sink.rejected[intent(1).op_id]
    left = Journal(tmp_path / "spool" / "j.jsonl")
    left.open()
    assert [r.op_id for r in left.pending("pg")] == [intent(1).op_id]  # kept, retried at the next start
    left.close()


def test_stop_during_an_outage_leaves_the_records_in_the_spool(tmp_path, capsys):
    async def run():
        repo = ScriptedRepo()
        repo.down = True
        sink = open_sink(tmp_path, repo, flush_timeout=0.05)
        await sink.recover()
        await issue_and_answer(sink, range(3))
        await sink.flush()
        return repo, sink

    repo, sink = asyncio.run(run())
    assert repo.rows == {} and len(parquet_ids(tmp_path)) == 3
    assert sink.left_in_spool == 3  # the job turns this into its exit status and one line
    journal = Journal(tmp_path / "spool" / "j.jsonl")
    journal.open()
    assert len(journal.pending("pg")) == 3 and journal.pending("pq") == []
    journal.close()


def test_journal_path_is_per_fleet_set_and_database(tmp_path):
    a = journal_path(tmp_path, ["fullrt", "default"], "parsec@db:5432/parsec")
    assert a == journal_path(tmp_path, ["default", "fullrt"], "parsec@db:5432/parsec")
    assert a.name.startswith("scheduler-default+fullrt-")
    assert a != journal_path(tmp_path, ["default", "fullrt"], "parsec@other:5432/parsec")
