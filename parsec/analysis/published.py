"""What the public IPFS DHT showed: ProbeLab's published parsec figures, in one place.

These are *public-network* figures (AWS servers in seven regions measuring the live Amino
DHT, 2023), not measurements of our testbed; every plot or table that shows them labels
them with ``LABEL``. The numbers are as collected in the project's reference
(``interface.md``, "Published numbers"), from ProbeLab's weekly parsec reports and the
optimistic-provide study. Ranges (``≈7–10 s``) keep both ends; a single value has
``low == high``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

LABEL = "public network (ProbeLab, 2023)"
SOURCE = ("ProbeLab's weekly parsec reports and optimistic-provide study of the public IPFS DHT "
          "(as collected in interface.md, 'Published numbers')")
FILTER = "successes only, rt_size > 50 (> 190 / > 200 in some reports)"


@dataclass(frozen=True)
class PublishedFigure:
    """One published number: a quantile or rate of one fleet's provides or retrievals."""

    fleet: str
    kind: str          # "provide" | "retrieval"
    metric: str        # "p50", "p90", "p99", "error_rate", "speedup_p50", "speedup_p90", "share_within_40s"
    low: float         # seconds for quantiles, a fraction for rates, a factor for speed-ups
    high: float
    region: str = "all"
    period: str = "2023"


def _ttfpr(region: str, p50: float, p90: float, p99: float) -> list[PublishedFigure]:
    period = "one week of March 2023"
    return [PublishedFigure("default", "retrieval", metric, value, value, region, period)
            for metric, value in (("p50", p50), ("p90", p90), ("p99", p99))]


FIGURES: tuple[PublishedFigure, ...] = (
    *_ttfpr("eu-central-1", 0.15, 0.44, 0.72),
    *_ttfpr("us-west-1", 0.32, 0.60, 0.86),
    *_ttfpr("ap-south-1", 0.79, 1.16, 1.52),
    *_ttfpr("sa-east-1", 0.91, 1.25, 1.61),
    *_ttfpr("af-south-1", 1.04, 1.50, 1.89),
    *_ttfpr("ap-southeast-2", 1.10, 1.59, 2.05),
    PublishedFigure("default", "provide", "p50", 7.0, 10.0),
    PublishedFigure("default", "provide", "p90", 35.0, 40.0),  # "≈90 % within 35–40 s"
    PublishedFigure("default", "provide", "error_rate", 0.0025, 0.0053),
    PublishedFigure("default", "retrieval", "error_rate", 0.0002, 0.0002),
    PublishedFigure("optprov", "provide", "p50", 0.87, 0.87),
    PublishedFigure("optprov", "provide", "p90", 1.85, 1.85),
    PublishedFigure("optprov", "provide", "speedup_p50", 23.0, 23.0),
    PublishedFigure("optprov", "provide", "speedup_p90", 32.0, 32.0),
    PublishedFigure("fullrt", "provide", "p50", 0.3, 0.6),
    PublishedFigure("fullrt", "retrieval", "error_rate", 0.01, 0.04),
)


def table() -> pd.DataFrame:
    """Every published figure as rows (fleet, kind, metric, low, high, region, period)."""
    return pd.DataFrame([asdict(figure) for figure in FIGURES])


def lookup(fleet: str, kind: str, metric: str, region: str = "all") -> PublishedFigure | None:
    """The published figure for this fleet/kind/metric/region, or None when none was published."""
    for figure in FIGURES:
        if (figure.fleet, figure.kind, figure.metric, figure.region) == (fleet, kind, metric, region):
            return figure
    return None


def describe(figure: PublishedFigure | None, unit: str = "s") -> str:
    """``0.87 s`` or ``7–10 s`` (or ``–`` when nothing was published); rates in percent."""
    if figure is None:
        return "–"
    scale, suffix = (100.0, " %") if figure.metric == "error_rate" else \
        (1.0, "×") if figure.metric.startswith("speedup") else (1.0, f" {unit}")
    low, high = figure.low * scale, figure.high * scale
    return f"{low:g}{suffix}" if low == high else f"{low:g}–{high:g}{suffix}"
