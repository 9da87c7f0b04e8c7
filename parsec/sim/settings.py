"""The simulator's settings (``PARSEC_SIM_*``): the public network it models and the run.

Defaults are the published facts of the public IPFS DHT where there is one, and a stated
assumption where there is none (the README section "Simulate the public network" lists
each with its source; ``bench/calibrate.py --sensitivity`` shows which of them move the
results and how far):

- ``peers`` 25,000 reachable DHT servers (the size of the public DHT's server set), plus
  ``unreachable`` 0.45: that share of all peer ids never answers a dial (≈45 % of the
  addresses Nebula crawls saw were never reachable), and a dial to one costs ``dial_timeout``
  15 s (go-libp2p's swarm dial timeout for public addresses; 5 s is its local one).
  ``stale_entries`` 0.15: the share of a routing table's entries that are such ids
  (ProbeLab RFM 19: ≈15 % in non-full buckets); few tables list a given dead id
  (``parsec.model.stale``).
  ``dial_refused`` 0.4: that share of the unreachable ids fails fast instead — the dial is
  refused after one round trip (a host that is up, its port closed). Nebula's crawls log
  both "connection refused" and "i/o timeout" among the top dial errors; no published
  figure gives the split, so the share is calibrated: it sets how many classic provides
  wait for three dial timeouts in a row, the published p90 tail (``bench/calibrate.py``).
  After a failed dial the peer is in go-libp2p's dial backoff (``dial_backoff``).
- ``rpc_timeout`` 25 s: go-libp2p-kad-dht bounds a request by the dial (≤ 15 s) and then
  ``read_timeout`` 10 s for the answer (its read-message timeout), not by one deadline —
  an engine deadline of 25 s lets the wire's own timeouts decide, as they do in go. (Our
  servers' default is one 10 s deadline, ``PARSEC_SIM_RPC_TIMEOUT=10`` models them.)
- ``churn_session`` 2 h: reachable peers alternate online sessions and offline gaps with
  this median (half of the new peers leave within 2 h, ProbeLab RFM 2), as the testbed.
- Latency: the testbed's region matrix (``parsec/data/region-rtt.json``, CloudPing p50
  RTTs) plus per-peer jitter — every peer has a fixed extra round trip (its access link
  and the distance inside its region; lognormal, median ``access_rtt`` 10 ms: most DHT
  servers are hosted in data centres, Balduf et al. 2023) and every message a jitter
  factor ``1 + jitter·N(0,1)`` (CloudPing p90 is 5–20 % above p50). ``population`` says
  where the DHT's peers are (an assumption, see ``PUBLIC_POPULATION``).
- A new connection costs ``dial_rtts`` 2 round trips before the request: go-libp2p's QUIC
  handshake (one round trip to a secure connection), then its ``BasicHost.NewStream``
  waits for identify to finish on the new connection before opening the DHT stream (one
  more). A connection unused for ``connection_idle`` is gone (remote peers' connection
  managers trim idle connections).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parsec.kad.fleets import ENGINE_STRATEGIES

from parsec.config import DEFAULT_STATE_DIR, CsvList, Seconds, ServerSettings
from parsec.model.stale import STALE_ENTRIES

SIM_FLEETS = ENGINE_STRATEGIES
"""The fleets the simulator runs: the engine's (other implementations run only for real)."""

PUBLIC_POPULATION = "us-east-1=10,us-east-2=2,us-west-1=28,eu-central-1=48,ap-south-1=6,ap-southeast-2=3," \
                    "af-south-1=1,sa-east-1=2"
"""Where the simulated DHT's peers are, by the matrix's regions (relative weights). Most
public DHT servers are in Europe and North America (ProbeLab's weekly geolocation plots
put Germany and the US on top); the shares are calibrated to the published TTFPR per
region, not measured: Europe 48 %, North America 40 %, Asia-Pacific 9 % (split between
the matrix's two Asian regions), South America 2 %, Africa 1 %. The fit wants most of
North America's peers near us-west-1 (its published 0.32 s p50 is half of what a round
trip to Europe with a new connection costs) and half of all peers near Frankfurt
(eu-central-1's 0.15 s) — where in North America the peers are is not published.
``matrix`` uses the matrix file's own weights (the testbed's: equal for the seven server
regions)."""

_SERVER_DEFAULTS = ServerSettings.model_fields


class SimSettings(BaseSettings):
    """A simulated public network and the measurement run on it (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_SIM_", extra="ignore")

    peers: int = Field(25_000, ge=30, le=1_000_000, description="reachable DHT servers")
    unreachable: float = Field(0.45, ge=0, lt=1, description="share of all peer ids that never answer a dial")
    stale_entries: float = Field(STALE_ENTRIES, ge=0, lt=1, description="share of a routing table's entries that "
                                 "are unreachable ids (RFM 19: ≈0.15); ≥ unreachable: every table lists every one")
    unresponsive: float = Field(0.0, ge=0, lt=1, description="share of reachable peers that accept "
                                "connections but never answer a request (no published figure)")
    dial_timeout: Seconds = Field(15.0, gt=0, description="what a dial to an unreachable id costs "
                                  "(go-libp2p's public-address dial timeout)")
    dial_backoff: Seconds = Field(5.0, description="go-libp2p's dial backoff base after a failed dial "
                                  "(+1 s × failures², ≤ 5 min); 0: none, as py-libp2p")
    dial_rtts: float = Field(2.0, ge=0, le=10, description="round trips a new connection costs before the "
                             "request (QUIC handshake + go-libp2p's identify wait: 2)")
    dial_refused: float = Field(0.4, ge=0, le=1, description="share of the unreachable ids whose dial is "
                                "refused after one round trip instead of timing out (calibrated)")
    rpc_timeout: Seconds = Field(25.0, gt=0, description="the engine's deadline per request: go's dial "
                                 "timeout + read timeout (our servers: 10 s)")
    read_timeout: Seconds = Field(10.0, gt=0, description="an answer not read this long after the request "
                                  "was written fails (go-libp2p-kad-dht's read-message timeout)")
    churn_session: Seconds = Field(7200.0, description="median online session and offline gap; 0: no churn")
    latency_matrix: str = Field("default", description="'default' (parsec/data/region-rtt.json) or a JSON file")
    population: str = Field("public", description="where the DHT's peers are: 'public', 'matrix' or "
                            "region=weight,…")
    jitter: float = Field(0.1, ge=0, le=1, description="per-message σ of the delay, as a fraction")
    access_rtt: Seconds = Field(0.01, description="median extra round trip of a peer (its access link)")
    access_sigma: float = Field(0.8, ge=0, le=3, description="lognormal σ of the per-peer extra round trip")
    connection_idle: Seconds = Field(30.0, description="a connection unused this long is closed")
    k: int = Field(20, ge=2, le=64)
    fleets: CsvList = Field(default_factory=lambda: list(SIM_FLEETS), min_length=1)
    optprov_rules: Literal["parsec", "go"] = Field("parsec", description="the optprov fleet's rules: parsec's "
                                                   "(default) or go-libp2p-kad-dht's (OptimisticProvide)")
    regions: CsvList = Field(default_factory=list, description="server regions; default: the matrix's "
                             "regions of non-zero weight (the testbed's seven)")
    servers_per_region: int = Field(1, ge=1, le=16)
    rounds: int = Field(14, ge=1, le=100_000, description="rounds per fleet")
    interval: Seconds = Field(60.0, gt=0)
    probes: int = Field(1, ge=1, le=100)
    bootstrap_peers: int = Field(4, ge=1, le=64)
    provide_timeout: Seconds = Field(_SERVER_DEFAULTS["provide_timeout"].default, gt=0)
    retrieve_timeout: Seconds = Field(_SERVER_DEFAULTS["retrieve_timeout"].default, gt=0)
    crawl_concurrency: int = Field(200, ge=1, le=10_000, description="fullrt crawl requests in flight (go: 200)")
    seed: int = 0
    start: datetime = Field(datetime(2023, 3, 6, tzinfo=timezone.utc),
                            description="the virtual clock's origin, as the records' created_at")
    output: Path | None = DEFAULT_STATE_DIR / "sim-parquet"

    @field_validator("fleets")
    @classmethod
    def _sim_fleets(cls, value: list[str]) -> list[str]:
        for fleet in value:
            if fleet not in SIM_FLEETS:
                raise ValueError(f"unknown fleet {fleet!r}; the simulator runs {', '.join(SIM_FLEETS)}")
        if len(set(value)) != len(value):
            raise ValueError("a fleet is named twice")
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    @field_validator("population")
    @classmethod
    def _population_shape(cls, value: str) -> str:
        if value not in ("public", "matrix"):
            parse_weights(value)
        return value


def parse_weights(text: str) -> dict[str, float]:
    """``eu-central-1=45,us-east-1=12`` → ``{region: weight}`` (ValueError if malformed)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, number = part.strip().partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = -1.0
        if not name or weight < 0:
            raise ValueError(f"bad population entry {part.strip()!r}: use region=weight,… e.g. eu-central-1=45")
        weights[name] = weights.get(name, 0.0) + weight
    if not sum(weights.values()) > 0:
        raise ValueError("population weights are all zero")
    return weights
