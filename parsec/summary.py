"""The table that ends a run: per fleet, provides and retrievals with p50/p90."""

from __future__ import annotations

from parsec.config import DatabaseSettings

_QUERY = """
SELECT n.fleet,
       count(*)                                                       AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration)
           FILTER (WHERE r.error IS NULL)                              AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY r.duration)
           FILTER (WHERE r.error IS NULL)                              AS p90,
       count(*) FILTER (WHERE r.error IS NOT NULL AND r.error <> 'not found') AS errors,
       count(*) FILTER (WHERE r.error = 'not found')                   AS not_found
FROM {table} r JOIN nodes_ecs n ON n.id = r.node_id
WHERE n.fleet = ANY($1::text[])
GROUP BY n.fleet ORDER BY n.fleet
"""


async def fleet_summary(pool, fleets: list[str]) -> dict[str, dict[str, dict]]:
    """``{fleet: {"provides": {...}, "retrievals": {...}}}`` straight from the contract tables."""
    out: dict[str, dict[str, dict]] = {fleet: {} for fleet in fleets}
    for kind, table in (("provides", "provides_ecs"), ("retrievals", "retrievals_ecs")):
        for row in await pool.fetch(_QUERY.format(table=table), fleets):
            out.setdefault(row["fleet"], {})[kind] = dict(row)
    return out


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


async def print_summary(database: DatabaseSettings, fleets: list[str]) -> dict:
    from parsec.store.db import connect_pool

    pool = await connect_pool(database)
    try:
        summary = await fleet_summary(pool, fleets)
    finally:
        await pool.close()
    print("\n" + format_summary(summary))
    return summary
