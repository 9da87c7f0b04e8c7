"""``parsec report``: execute the analysis notebooks with parameters, publish HTML + PNGs.

Input is checked here, before any kernel starts (`load.fleet_counts` reads only the
``fleet`` column of a Parquet dataset): a missing or empty dataset, an unknown fleet or a
bad time window is one line and exit code 2. A notebook cell that fails is one line and
exit code 1, with the partly executed notebook kept beside the report.

The default input is the dataset ``parsec demo`` leaves behind: the Parquet files under
``PARSEC_SCHEDULER_PARQUET_DIR`` (default ``.parsec/parquet``). ``--source postgres`` reads
``PARSEC_DATABASE_*``; without ``PARSEC_DATABASE_HOST`` it starts the demo's embedded
PostgreSQL (``<state-dir>/postgres``) for the report and stops it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from pathlib import Path

from parsec.config import FLEETS
from parsec.console import say

# parsec.analysis (pandas, pyarrow) and nbformat are imported inside the functions: every
# `parsec` start builds this command's parser, and nbformat is an optional dependency
# (`_check_installed` names what is missing)

NEEDED = ("nbclient", "nbconvert", "nbformat", "ipykernel", "matplotlib")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", action="append",
                        help="weekly, fleets, all (the default) or the path of an .ipynb; repeatable")
    parser.add_argument("--source", choices=["parquet", "postgres"], default="parquet",
                        help="read the Parquet dataset (default) or PostgreSQL (PARSEC_DATABASE_*)")
    parser.add_argument("--parquet", help="Parquet dataset root (default PARSEC_SCHEDULER_PARQUET_DIR, "
                                          "else .parsec/parquet: where `parsec demo` writes)")
    parser.add_argument("--state-dir", default=".parsec",
                        help="with --source postgres and no PARSEC_DATABASE_HOST: the demo's state dir, whose "
                             "embedded PostgreSQL is started for the report (default .parsec)")
    parser.add_argument("--start", help="first moment, ISO date or time, UTC (inclusive)")
    parser.add_argument("--end", help="last moment, ISO date or time, UTC (exclusive)")
    parser.add_argument("--last", help="the span before --end (or now), e.g. 7d, 2w, 36h")
    parser.add_argument("--fleet", help="the weekly report's fleet (default: default, else the first measured)")
    parser.add_argument("--fleets", help="the fleets to compare, comma-separated (default: every fleet measured)")
    parser.add_argument("--baseline", default="default", help="the fleet speed-ups are measured against")
    parser.add_argument("--regions", help="comma-separated regions (default: all)")
    parser.add_argument("--rt-size-min", type=int, default=0,
                        help="keep measurements whose routing table held at least this many peers "
                             "(default 0; the published plots used 51)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--host-lag-threshold", metavar="DURATION",
                        help="flag operations whose trace says the process that timed them saw a larger event-loop "
                             "lag (host_lag_ms) while they ran; seconds or a Go duration "
                             "(default PARSEC_REPORT_HOST_LAG_THRESHOLD, else 50ms)")
    parser.add_argument("--out", default=".parsec/report", help="output folder (default .parsec/report)")
    parser.add_argument("--show-code", action="store_true", help="keep the code cells in the HTML")
    parser.add_argument("--cell-timeout", type=float, default=600, help="seconds a cell may run (default 600)")


def _check_installed() -> None:
    from parsec.analysis.load import DataError

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise DataError(f"parsec report needs {', '.join(missing)}: run scripts/setup.sh, "
                        "or pip install -e '.[analysis]'")


def _notebooks(names: list[str] | None) -> list[Path]:
    from parsec.analysis.report import NOTEBOOKS, notebook_path

    wanted: list[str] = []
    for name in names or ["all"]:
        wanted += list(NOTEBOOKS) if name == "all" else [name]
    return [notebook_path(name) for name in dict.fromkeys(wanted)]


@contextlib.contextmanager
def _database(args: argparse.Namespace):
    """(DatabaseSettings or None, env for the kernel): the demo's embedded server if needed."""
    if args.source != "postgres":
        yield None, {}
        return
    from parsec.analysis.load import DataError, database_from_env, demo_postgres

    database = database_from_env()
    if not database.host_given:
        data_dir = Path(args.state_dir) / "postgres"
        embedded = demo_postgres(data_dir)
        if embedded is None:
            raise DataError(f"no database: set PARSEC_DATABASE_HOST (and _PORT, _USER, _PASSWORD, _NAME), "
                            f"or run `parsec demo` first (no embedded PostgreSQL in {data_dir})")
        say(f"starting the demo's embedded PostgreSQL in {data_dir}")
        database = embedded.start()
        try:
            yield database, _env(database)
        finally:
            embedded.stop()
        return
    yield database, _env(database)


def _env(database) -> dict[str, str]:
    return {f"PARSEC_DATABASE_{key.upper()}": str(value) for key, value in database.model_dump().items()}


def selection_values(args: argparse.Namespace, start, end) -> dict:
    """The parameters every notebook may take, from the command line (window already resolved)."""
    from parsec.analysis.bounds import threshold_ms
    from parsec.analysis.load import default_parquet_dir

    parquet = Path(args.parquet).expanduser() if args.parquet else default_parquet_dir()
    return {
        "source": args.source, "parquet_dir": str(parquet.resolve()),
        "start": start.isoformat() if start else None, "end": end.isoformat() if end else None,
        "regions": _split(args.regions), "rt_size_min": args.rt_size_min,
        "fleet": args.fleet, "fleets": _split(args.fleets), "baseline": args.baseline,
        "n_boot": args.bootstrap, "seed": args.seed,
        "host_lag_threshold_ms": threshold_ms(getattr(args, "host_lag_threshold", None)),
    }


def parameters(args: argparse.Namespace, notebook: Path, output_dir: Path, start, end) -> dict:
    """What the notebook gets: those of `selection_values` it declares, and its output folder."""
    import nbformat

    from parsec.analysis.report import parameter_names

    values = {**selection_values(args, start, end), "output_dir": str(output_dir / notebook.stem)}
    declared = parameter_names(nbformat.read(notebook, as_version=4))
    return {name: value for name, value in values.items() if name in declared}


def _split(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] or None if text else None


def _named_fleets(values: dict) -> list[str] | None:
    """The fleets named by ``--fleet`` and ``--fleets`` (None: every fleet)."""
    return ([values["fleet"]] if values["fleet"] else []) + (values["fleets"] or []) or None


def check_input(values: dict, database) -> None:
    """The notebooks' own load, reduced to counting fleets: the same errors, before any kernel.
    Every fleet named (``--fleet`` and ``--fleets``) must have measurements."""
    from parsec.analysis.load import fleet_counts

    fleet_counts(source=values["source"], parquet_dir=values["parquet_dir"], database=database,
                 start=values["start"], end=values["end"], fleets=_named_fleets(values),
                 regions=values["regions"], rt_size_min=values["rt_size_min"])


SUMMARY_COLUMNS = ["fleet", "kind", "duration", "outcome", "trace_host_lag_ms", "trace_path_bound_s"]


def summary(values: dict, database) -> list[str]:
    """The closing lines: per fleet, the share of operations timed under more host lag than
    the threshold, and duration against the path bound per fleet and kind (`bounds`), over
    the same selection the notebooks load (a Parquet dataset: only these columns read)."""
    from parsec.analysis import bounds
    from parsec.analysis.load import measurement_columns

    frame = measurement_columns(SUMMARY_COLUMNS, source=values["source"], parquet_dir=values["parquet_dir"],
                                database=database, start=values["start"], end=values["end"],
                                fleets=_named_fleets(values), regions=values["regions"],
                                rt_size_min=values["rt_size_min"])
    return bounds.summary_lines(frame, values["host_lag_threshold_ms"])


def run(args: argparse.Namespace) -> int:
    """Exit code 0 (every report written), 1 (a notebook failed), 2 (bad input)."""
    from parsec.analysis.load import DataError, window
    from parsec.analysis.report import ReportError, execute

    try:
        _check_installed()
        if args.bootstrap < 1:
            raise DataError(f"--bootstrap must be at least 1, got {args.bootstrap}")
        if args.baseline not in FLEETS:
            raise DataError(f"unknown baseline fleet {args.baseline!r}; known: {', '.join(FLEETS)}")
        start, end = window(args.start, args.end, args.last)
        notebooks = _notebooks(args.notebook)
        output_dir = Path(args.out).expanduser().resolve()
        with _database(args) as (database, env):
            values = selection_values(args, start, end)
            check_input(values, database)
            closing = summary(values, database)
            runs = [(notebook, parameters(args, notebook, output_dir, start, end)) for notebook in notebooks]
            for notebook, params in runs:
                say(f"executing {notebook.name}")
                report = execute(notebook, params, output_dir, progress=say, timeout=args.cell_timeout,
                                 show_code=args.show_code, env=env)
                say(f"{report.name}: {report.html} ({len(report.figures)} figures, {len(report.tables)} tables "
                     f"in {report.html.with_suffix('')})")
            for line in closing:
                say(line)
    except DataError as error:
        print(f"parsec report: {error}", file=sys.stderr)
        return 2
    except ReportError as error:
        print(f"parsec report: {error}", file=sys.stderr)
        return 1
    return 0
