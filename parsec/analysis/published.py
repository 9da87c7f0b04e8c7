"""What the public IPFS DHT showed: ProbeLab's published parsec figures, in one place, each
with its primary source.

These are *public-network* figures (AWS servers in six or seven regions measuring the live
Amino DHT), not measurements of our testbed; every plot or table that shows them labels
them with ``LABEL``. Each ``PublishedFigure`` names where the number was read (``source``:
repository, commit and path, or URL), the period it covers and, in ``note``, the filter
the publisher applied and anything that could not be checked. Ranges (``≈7–10 s``) keep both
ends; a single value has ``low == high``. ``verified`` is False for the few numbers whose
primary source could not be read here (they are kept as the project's reference gives them).

The primary sources:

- ``PARSEC_NOTEBOOK`` — ProbeLab's own analysis notebook of the parsec measurements
  (probe-lab/parsec, ``analysis/analysis.ipynb`` as added in commit c55bba7, 21 Mar 2023;
  removed in cdd2f49, Sep 2025). Its saved cell outputs give TTFPR p50/p90/p99 per region
  for calendar weeks 10 and 11 of 2023 (``DATE_PART('week', created_at)``; week 11 is
  13–19 Mar 2023) over *all* retrievals of the six-region deployment (errors included, no
  ``rt_size`` filter) and the retrieval error rate per region.
- ``WEBSITE_2023`` — the probelab.io site's plot data as committed daily to
  plprobelab/website (``content.en/plots/…``; the query behind each plot is in
  ``config/plotdefs/<plot>.yaml``). The parsec plots keep successes with ``rt_size > 200``
  of the ``default`` fleet; the "quartiles" indicators are a rolling 7-day window ending at
  the file's date (their title still names the week the indicator was first built for),
  the per-region CDFs a 30-day window.
- ``WEBSITE_2024`` — the same plots in probe-lab/website (the site's repository since 2024).
- ``OPTPROV_PR`` — the optimistic-provide pull request to go-libp2p-kad-dht
  (libp2p/go-libp2p-kad-dht#783, description of 3 Aug 2022): the study's own runs.
- ``OPTPROV_BLOG`` — ProbeLab's blog post on optimistic provide as shipped by default in
  Kubo 0.39 (https://probelab.io/blog/optimistic-provide, 20 Mar 2026) and its announcement
  (https://discuss.ipfs.tech/t/optimistic-provide-how-we-made-ipfs-content-publishing-10x-faster/20067).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

LABEL = "public network (ProbeLab, 2023)"
PARSEC_NOTEBOOK = ("probe-lab/parsec@c55bba75735b539f405df1b9439e2443f6c92cea analysis/analysis.ipynb "
                   "(saved cell output; https://github.com/probe-lab/parsec/blob/c55bba7/analysis/analysis.ipynb)")
WEBSITE_2023 = "plprobelab/website"
WEBSITE_2024 = "probe-lab/website"
OPTPROV_PR = "https://github.com/libp2p/go-libp2p-kad-dht/pull/783 (description, 3 Aug 2022)"
OPTPROV_BLOG = ("https://probelab.io/blog/optimistic-provide (20 Mar 2026); "
                "https://discuss.ipfs.tech/t/optimistic-provide-how-we-made-ipfs-content-publishing-10x-faster/20067")
SOURCE = ("ProbeLab's parsec analysis notebook (probe-lab/parsec analysis/analysis.ipynb, week 11 of 2023), "
          "the probelab.io plot data (plprobelab/website, probe-lab/website) and the optimistic-provide "
          "pull request (libp2p/go-libp2p-kad-dht#783); each figure's own source is in its 'source' field")
FILTER = "successes only, rt_size > 200 (probelab.io plots); all retrievals (week 11 notebook); > 50 in some reports"

_WEEK11 = "one week of March 2023"  # calendar week 11: 13–19 Mar 2023
_PUBLISH_WINDOW = "20–26 May 2023"  # the 7 days before the 2023-05-27 build (title: "week ending 21 May 2023")


@dataclass(frozen=True)
class PublishedFigure:
    """One published number: a quantile, mean, share or rate of one fleet's provides or retrievals."""

    fleet: str
    kind: str          # "provide" | "retrieval"
    metric: str        # "p50", "p90", "p99", "mean", "error_rate", "speedup_p50", "speedup_p90", "share_below_1s"
    low: float         # seconds for quantiles and means, a fraction for rates and shares, a factor for speed-ups
    high: float
    region: str = "all"
    period: str = "2023"
    source: str = ""   # the primary source: repository@commit path, or URL
    note: str = ""     # the publisher's filter, the exact window, what could not be checked
    verified: bool = True


def _ttfpr(region: str, p50: float, p90: float, p99: float, exact: tuple[float, float, float]) -> list[PublishedFigure]:
    note = (f"calendar week 11 of 2023 (13–19 Mar), all retrievals (errors included, no rt_size filter), six-region "
            f"deployment; notebook values {exact[0]:.6f} / {exact[1]:.6f} / {exact[2]:.6f} s")
    return [PublishedFigure("default", "retrieval", metric, value, value, region, _WEEK11, PARSEC_NOTEBOOK, note)
            for metric, value in (("p50", p50), ("p90", p90), ("p99", p99))]


def _website(path: str, commit: str, repository: str = WEBSITE_2023) -> str:
    return f"{repository}@{commit} {path}"


_APRIL = _website("content.en/plots/dht-lookup-performance-cdf-region-2023-04-05.json",
                  "6ae241eb20c8146acf90e3c739e354b813191fdd")
_APRIL_PUBLISH = _website("content.en/plots/dht-publish-performance-cdf-region-2023-04-05.json",
                          "6ae241eb20c8146acf90e3c739e354b813191fdd")
_MAY_PUBLISH = _website("content.en/plots/2023/05/27/dht-publish-performance-quartiles.json",
                        "31fabae867c0ae345dcd63aff5593267039aea9f")
_MAY_LOOKUP = _website("content.en/plots/2023/05/27/dht-lookup-performance-quartiles.json",
                       "31fabae867c0ae345dcd63aff5593267039aea9f")
_SEP_2024_LOOKUP = _website("content.en/plots/latest/dht-lookup-performance-quartiles.json",
                            "034c7a03bac8546008989f774c4bd76e51d89f2b", WEBSITE_2024)

FIGURES: tuple[PublishedFigure, ...] = (
    *_ttfpr("eu-central-1", 0.15, 0.44, 0.72, (0.151251, 0.437458, 0.716422)),
    *_ttfpr("us-west-1", 0.32, 0.60, 0.86, (0.318417, 0.598784, 0.861823)),
    *_ttfpr("ap-south-1", 0.79, 1.16, 1.52, (0.789283, 1.161118, 1.519567)),
    *_ttfpr("sa-east-1", 0.91, 1.25, 1.61, (0.909194, 1.253586, 1.612416)),
    *_ttfpr("af-south-1", 1.04, 1.50, 1.89, (1.036865, 1.499437, 1.889071)),
    *_ttfpr("ap-southeast-2", 1.10, 1.59, 2.05, (1.097779, 1.590726, 2.050176)),
    PublishedFigure("default", "provide", "p50", 7.0, 10.0, source=_APRIL_PUBLISH, verified=False,
                    note="≈7–10 s as interface.md gives it; its primary source was not found. The closest primary "
                         "data: per-region medians 6.89–9.75 s in the 30 days up to 4 Apr 2023 (successes, "
                         "rt_size > 200)"),
    PublishedFigure("default", "provide", "p90", 35.0, 40.0, source=_APRIL_PUBLISH, verified=False,
                    note="'≈90 % within 35–40 s' as interface.md gives it; its primary source was not found. The "
                         "closest primary data: per-region p90 23.6–36.2 s in the 30 days up to 4 Apr 2023"),
    PublishedFigure("default", "provide", "error_rate", 0.0025, 0.0053, verified=False,
                    note="as interface.md gives it; the weekly reports show error rates as images only (probe-lab/"
                         "network-measurements reports/2023/calendar-week-*/ipfs/plots/parsec-error-rate.png)"),
    PublishedFigure("default", "retrieval", "error_rate", 0.0002, 0.0002, period=_WEEK11, source=PARSEC_NOTEBOOK,
                    note="week 11 of 2023: 0.017–0.023 % per region, 17,770 retrievals each"),
    PublishedFigure("optprov", "provide", "p50", 0.87, 0.87, period="2022 (optimistic-provide study)",
                    source=OPTPROV_PR, note="'>23x and >32x provide speed-up for the 50th and 90th percentile "
                                            "respectively (0.87s and 1.85s)'; go-libp2p-kad-dht's rules"),
    PublishedFigure("optprov", "provide", "p90", 1.85, 1.85, period="2022 (optimistic-provide study)",
                    source=OPTPROV_PR, note="see p50"),
    PublishedFigure("optprov", "provide", "speedup_p50", 23.0, 23.0, period="2022 (optimistic-provide study)",
                    source=OPTPROV_PR, note="against the study's own classic provides, not the parsec weeks'"),
    PublishedFigure("optprov", "provide", "speedup_p90", 32.0, 32.0, period="2022 (optimistic-provide study)",
                    source=OPTPROV_PR, note="against the study's own classic provides, not the parsec weeks'"),
    PublishedFigure("fullrt", "provide", "p50", 0.3, 0.6, verified=False,
                    note="as interface.md gives it; probe-lab/parsec analysis/2023-03-23-fullrt.ipynb (22 Mar 2023) "
                         "saved only figures"),
    PublishedFigure("fullrt", "retrieval", "error_rate", 0.01, 0.04, verified=False,
                    note="as interface.md gives it; probe-lab/parsec analysis/2023-03-23-fullrt.ipynb (22 Mar 2023) "
                         "saved only figures"),
    # the seventh region: not in the week-11 notebook's six-region deployment
    PublishedFigure("default", "retrieval", "p50", 0.26, 0.26, "us-east-2", "30 days up to 4 Apr 2023", _APRIL,
                    "per-region CDF (successes, rt_size > 200), 8,138 retrievals; 0.2615 s"),
    PublishedFigure("default", "retrieval", "p90", 0.60, 0.60, "us-east-2", "30 days up to 4 Apr 2023", _APRIL,
                    "per-region CDF (successes, rt_size > 200); 0.5962 s"),
    PublishedFigure("default", "retrieval", "p99", 2.18, 2.18, "us-east-2", "30 days up to 4 Apr 2023", _APRIL,
                    "per-region CDF (successes, rt_size > 200); 2.1847 s"),
    # the weekly KPIs, all regions pooled
    PublishedFigure("default", "retrieval", "p50", 0.564, 0.564, "all", _PUBLISH_WINDOW, _MAY_LOOKUP,
                    "7-day rolling window before the 2023-05-27 build, successes, rt_size > 200; 0.563990 s"),
    PublishedFigure("default", "retrieval", "p90", 1.136, 1.136, "all", _PUBLISH_WINDOW, _MAY_LOOKUP,
                    "as p50; 1.136474 s"),
    PublishedFigure("default", "retrieval", "p99", 1.593, 1.593, "all", _PUBLISH_WINDOW, _MAY_LOOKUP,
                    "as p50; 1.592650 s"),
    PublishedFigure("default", "retrieval", "p50", 0.515, 0.515, "all", "week of 8 Sep 2024", _SEP_2024_LOOKUP,
                    "title 'Data: 8 Sep 2024'; 0.514767 s (week before 0.524340 s)"),
    PublishedFigure("default", "retrieval", "p90", 1.055, 1.055, "all", "week of 8 Sep 2024", _SEP_2024_LOOKUP,
                    "1.054780 s (week before 1.081800 s)"),
    PublishedFigure("default", "retrieval", "p99", 1.456, 1.456, "all", "week of 8 Sep 2024", _SEP_2024_LOOKUP,
                    "1.455644 s (week before 1.528307 s)"),
    PublishedFigure("default", "provide", "p50", 7.35, 7.35, "all", _PUBLISH_WINDOW, _MAY_PUBLISH,
                    "7-day rolling window before the 2023-05-27 build (the indicator's title says 'week ending "
                    "21 May 2023'), successes, rt_size > 200; 7.349 s (the 2023-05-22 build: 7.945 s)"),
    PublishedFigure("default", "provide", "p90", 20.5, 20.5, "all", _PUBLISH_WINDOW, _MAY_PUBLISH,
                    "as p50; 20.525 s"),
    PublishedFigure("default", "provide", "p99", 75.7, 75.7, "all", _PUBLISH_WINDOW, _MAY_PUBLISH,
                    "as p50; 75.694 s"),
    # optimistic provide as Kubo ships it since 0.39
    PublishedFigure("optprov", "provide", "mean", 0.7, 0.7, "all", "Kubo ≥ 0.39 (2025–26)", OPTPROV_BLOG,
                    "'≈0.7 s average' as interface.md gives it; the announcement says 'from around 15 seconds to "
                    "less than 1 second'; the blog's figures could not be read here", verified=False),
    PublishedFigure("optprov", "provide", "share_below_1s", 0.9, 0.9, "north-america+europe",
                    "Kubo ≥ 0.39 (2025–26)", OPTPROV_BLOG,
                    "'sub-second for 90 % of requests from North America and Europe' (interface.md; summaries of "
                    "the blog say the same); a lower bound", verified=False),
)


def table() -> pd.DataFrame:
    """Every published figure as rows (fleet, kind, metric, low, high, region, period, source, note, verified)."""
    return pd.DataFrame([asdict(figure) for figure in FIGURES])


def lookup(fleet: str, kind: str, metric: str, region: str = "all",
           period: str | None = None) -> PublishedFigure | None:
    """The published figure for this fleet/kind/metric/region (and period, when given; otherwise the
    first listed, the March 2023 figures before later ones), or None when none was published."""
    for figure in FIGURES:
        if (figure.fleet, figure.kind, figure.metric, figure.region) == (fleet, kind, metric, region) \
                and (period is None or figure.period == period):
            return figure
    return None


def describe(figure: PublishedFigure | None, unit: str = "s") -> str:
    """``0.87 s`` or ``7–10 s`` (or ``–`` when nothing was published); rates and shares in percent."""
    if figure is None:
        return "–"
    scale, suffix = (100.0, " %") if figure.metric in ("error_rate",) or figure.metric.startswith("share") else \
        (1.0, "×") if figure.metric.startswith("speedup") else (1.0, f" {unit}")
    low, high = figure.low * scale, figure.high * scale
    return f"{low:g}{suffix}" if low == high else f"{low:g}–{high:g}{suffix}"
