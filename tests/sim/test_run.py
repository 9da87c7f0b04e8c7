"""Whole simulated runs: the same seed writes the same records, readable like a real run's."""

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from parsec.cli import main
from parsec.sim.run import simulate
from parsec.sim.settings import SimSettings
from parsec.store.parquet import ParquetSink, read_dataset
from parsec.store.records import MeasurementRecord

REGIONS = ["eu-central-1", "us-west-1", "ap-south-1", "sa-east-1"]


def small(output: Path | None = None, **changes) -> SimSettings:
    values = dict(peers=800, rounds=4, regions=REGIONS, interval=30, output=output, seed=11)
    return SimSettings(**{**values, **changes})


def run_records(settings: SimSettings) -> list[MeasurementRecord]:
    from parsec.sim.run import Simulation

    simulation = Simulation(settings)
    simulation.join()
    records: list[MeasurementRecord] = []
    simulation.run(records.extend)
    return records


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("sim") / "parquet"
    return out, simulate(small(out))


def test_the_same_seed_writes_the_same_records() -> None:
    first, second = run_records(small()), run_records(small())
    assert first == second
    other = run_records(small(seed=12))
    assert [r.duration for r in other] != [r.duration for r in first]


def test_rounds_follow_the_schedulers_round_robin(dataset) -> None:
    out, outcome = dataset
    frame = read_dataset(out)
    for fleet in ("default", "optprov", "fullrt"):
        rows = frame[frame["fleet"] == fleet]
        provides = rows[rows["kind"] == "provide"].sort_values("round")
        assert list(provides["region"]) == REGIONS  # each region publishes in turn (by node id)
        assert provides["error"].isna().all()
        for _, provide in provides.iterrows():
            probes = rows[(rows["kind"] == "retrieval") & (rows["round"] == provide["round"])]
            assert sorted(probes["region"]) == sorted(r for r in REGIONS if r != provide["region"])
            assert (probes["cid"] == provide["cid"]).all()
            assert probes["error"].isna().all()  # every record found
    assert outcome.summary["default"]["provides"]["n"] == 4 and outcome.summary["fullrt"]["retrievals"]["n"] == 12


def test_the_dataset_reads_back_with_the_columns_of_a_real_run(dataset, tmp_path) -> None:
    out, _ = dataset
    simulated = read_dataset(out)
    real_root = tmp_path / "real"
    with ParquetSink(real_root, writer_id="real") as sink:  # a record as the scheduler writes one
        sink.write([MeasurementRecord(
            op_id=uuid.uuid4().hex, kind="retrieval", scheduler_id=1, node_id=1, fleet="default",
            region="eu-central-1", round=1, rt_size=180, duration=0.2, cid="Qm", error=None, step="retrieval",
            created_at=datetime.now(timezone.utc), trace=json.dumps({"rpc_total": 9, "hops": 2, "peers_contacted": 9}),
        )])
    real = read_dataset(real_root)
    assert list(simulated.columns) == list(real.columns)
    assert dict(simulated.dtypes) == dict(real.dtypes)
    assert len(simulated) == 3 * 4 * (1 + 3)
    assert simulated["trace_rpc_total"].notna().all() and simulated["trace_hops"].notna().all()
    assert set(simulated["kind"]) == {"provide", "retrieval"}
    assert simulated["created_at"].min() >= datetime(2023, 3, 6, tzinfo=timezone.utc)
    traces = [json.loads(t) for t in simulated["trace"]]
    assert {t["strategy"] for t in traces if t["operation"] == "provide"} == {"classic", "optimistic", "direct"}
    fullrt = simulated[(simulated["fleet"] == "fullrt")]
    assert (fullrt["rt_size"] > 700).all()  # the crawled table, as a fullrt server reports


def test_parsec_simulate_runs_and_writes(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(["simulate", "--peers", "300", "--rounds", "2", "--fleets", "default,optprov", "--regions",
                 "eu-central-1,us-west-1", "--seed", "3", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "round 1/4" in printed and "done: 8 records" in printed and "default" in printed
    assert len(read_dataset(out)) == 8


@pytest.mark.parametrize("argv, message", [
    (["--peers", "5"], "PARSEC_SIM_PEERS"),
    (["--peers", "lots"], "PARSEC_SIM_PEERS"),
    (["--dial-refused", "1.5"], "PARSEC_SIM_DIAL_REFUSED"),
    (["--fleets", "default,go"], "unknown fleet 'go'"),
    (["--regions", "moon-1", "--peers", "300"], "unknown region(s) moon-1"),
    (["--population", "eu=1", "--peers", "300"], "population names regions the matrix lacks: eu"),
    (["--latency", "/no/such/matrix.json", "--peers", "300"], "cannot read latency matrix"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(["simulate", "--output", "none", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_without_jitter_no_retrieval_beats_the_path_bound_of_its_walk() -> None:
    """The simulator fills ``path_bound_s`` as the testbed does; with no jitter the model
    is exact, so every first-provider time is at least its path's bound and, the walk's
    own waits for a slot aside, little more."""
    records = [r for r in run_records(small(jitter=0.0)) if r.kind == "retrieval" and not r.error]
    traces = [json.loads(r.trace) for r in records]
    bounded = [(r.duration, t["path_bound_s"], t["path_wait_s"]) for r, t in zip(records, traces)
               if t.get("path_bound_s")]
    assert len(bounded) >= len(records) // 2
    assert all(duration >= bound - 1e-4 for duration, bound, _ in bounded)  # bounds are rounded to 0.1 ms
    assert all(duration <= bound + wait + 0.05 for duration, bound, wait in bounded)
