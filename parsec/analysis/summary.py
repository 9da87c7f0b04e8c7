"""The table that ends a run: per fleet, provides and retrievals with n and p50/p90, then
each fleet's p50 speed-up against a baseline fleet with a 95 % bootstrap interval.

The numbers of a real run come from the contract tables (``Repository.fleet_summary`` and
``Repository.fleet_durations``), those of a simulated one from its records
(``parsec.sim.report.fleet_summary``), in the same shape."""

from __future__ import annotations

from datetime import datetime, timezone

from parsec.analysis.stats import bootstrap_ratio
from parsec.config import DatabaseSettings
from parsec.store.db import Repository, connect_pool

EVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}s"


def format_summary(summary: dict[str, dict[str, dict]]) -> str:
    header = f"{'fleet':<10} {'provides':>8} {'p50':>8} {'p90':>8} {'errors':>6}   {'retrievals':>10} {'p50':>8} {'p90':>8} {'not found':>9} {'errors':>6}"
    lines = [header, "-" * len(header)]
    for fleet, kinds in summary.items():
        p = kinds.get("provides", {})
        r = kinds.get("retrievals", {})
        lines.append(
            f"{fleet:<10} {p.get('n', 0):>8} {_fmt(p.get('p50')):>8} {_fmt(p.get('p90')):>8} {p.get('errors', 0):>6}   "
            f"{r.get('n', 0):>10} {_fmt(r.get('p50')):>8} {_fmt(r.get('p90')):>8} {r.get('not_found', 0):>9} {r.get('errors', 0):>6}"
        )
    return "\n".join(lines)


def format_speedups(durations: dict[str, dict[str, list[float]]], baseline: str = "default",
                    n_boot: int = 2000) -> str:
    """Baseline p50 ÷ fleet p50 per kind, with a seeded percentile-bootstrap 95 % interval
    (each fleet resampled on its own: different records, so unpaired) and both n."""
    lines = []
    for kind, per_fleet in durations.items():
        base = per_fleet.get(baseline, [])
        for fleet, values in per_fleet.items():
            if fleet == baseline or not base or not values:
                continue
            r = bootstrap_ratio(base, values, n_boot=n_boot)
            lines.append(f"{fleet:<10} {kind:<10} {r.point:>6.2f}x  95% [{r.low:.2f}, {r.high:.2f}]  "
                         f"(n={r.n_other} vs {baseline} n={r.n_baseline})")
    if not lines:
        return ""
    header = f"p50 speed-up against {baseline} ({baseline} p50 / fleet p50; > 1: faster)"
    return "\n".join([header, "-" * len(header), *lines])


async def print_summary(database: DatabaseSettings, fleets: list[str], baseline: str = "default",
                        since: datetime = EVER) -> dict:
    pool = await connect_pool(database)
    try:
        repo = Repository(pool)
        summary = await repo.fleet_summary(fleets, since)
        durations = await repo.fleet_durations(fleets, since) if baseline in fleets and len(fleets) > 1 else {}
    finally:
        await pool.close()
    print("\n" + format_summary(summary))
    speedups = format_speedups(durations, baseline)
    if speedups:
        print("\n" + speedups)
    return summary
