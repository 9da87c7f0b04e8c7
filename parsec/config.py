"""Settings for every parsec component: one pydantic-settings object per component.

The environment names are the original's (``PARSEC_DATABASE_*``, ``PARSEC_SERVER_*``,
``PARSEC_SCHEDULER_*``, ``AWS_REGION``) so a deployment of the Go tool can be pointed at
ours unchanged. CLI flags override the environment: the CLI passes them as init values,
which pydantic-settings ranks above environment variables.

Durations accept seconds (``30``, ``0.5``) or Go-style strings (``1m``, ``1m30s``,
``250ms``) because the original's flags and env values are Go durations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from parsec.kad.constants import ALPHA as GO_ALPHA
from parsec.kad.constants import RPC_TIMEOUT
from parsec.kad.fleets import ENGINE_STRATEGIES, STRATEGIES
from parsec.kad.fullrt import FULLRT_CRAWL_INTERVAL
from parsec.model.stale import STALE_ENTRIES

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a Go duration string (``1m30s``)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (use seconds or e.g. 1m, 30s, 250ms)")
    return total


def _split_list(value: object) -> object:
    """Comma-separated env values (``default,fullrt``) as lists; lists pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]

FLEETS = tuple(STRATEGIES)  # the strategy names (parsec.kad.fleets): a fleet label that names one selects it
CLIENT_MODE_STRATEGIES = ENGINE_STRATEGIES  # our engine's: the handler is ours to leave out


def known_fleet(value: str) -> str:
    """``value`` if it names a fleet, else a ValueError that lists the fleets."""
    if value not in FLEETS:
        raise ValueError(f"unknown fleet {value!r}; known: {', '.join(FLEETS)}")
    return value
AMINO_BOOTSTRAP = (
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
)
DEFAULT_STATE_DIR = Path(".parsec")


class DatabaseSettings(BaseSettings):
    """Where the PostgreSQL database is. ``host`` left unset means: the demo embeds one."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_DATABASE_", extra="ignore")

    host: str = "localhost"
    port: int = Field(5432, ge=1, le=65535)
    name: str = "parsec"
    user: str = "parsec"
    password: str = Field("password", repr=False)
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "disable"

    @property
    def host_given(self) -> bool:
        """True when the user named a database (env or flag); else the demo embeds one."""
        return "host" in self.model_fields_set

    def dsn(self) -> str:
        """A libpq URL for asyncpg; a host starting with ``/`` is a unix-socket directory."""
        from urllib.parse import quote

        auth = f"{quote(self.user)}:{quote(self.password)}"
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{quote(self.name)}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.name)}?sslmode={self.ssl_mode}"

    def redacted(self) -> str:
        """The address without the password, for logs and messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.name}"


class NetworkSettings(BaseSettings):
    """Which kad-dht network a peer joins: the local testbed or a public one."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_", extra="ignore")

    network: Literal["testbed", "amino", "custom"] = "testbed"
    protocol_prefix: str = "/ipfs"
    bootstrap_peers: CsvList = Field(default_factory=list)
    bootstrap_file: Path = DEFAULT_STATE_DIR / "testbed" / "bootstrap.txt"
    latency_matrix: str | None = Field(
        None, description="emulate WAN latency on the testbed: 'default' (public inter-region RTTs) or a JSON file")
    latency_jitter: float | None = Field(None, ge=0, le=1)
    latency_loss: float | None = Field(None, ge=0, lt=1)

    @field_validator("protocol_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("must start with '/' and not end with '/', e.g. /ipfs")
        return value

    @model_validator(mode="after")
    def _custom_needs_bootstrap(self) -> "NetworkSettings":
        if self.network == "custom" and not self.bootstrap_peers and "bootstrap_file" not in self.model_fields_set:
            raise ValueError("network 'custom' needs PARSEC_BOOTSTRAP_PEERS or PARSEC_BOOTSTRAP_FILE")
        return self

    @property
    def protocol_id(self) -> str:
        return f"{self.protocol_prefix}/kad/1.0.0"

    def latency_model(self):
        """The WAN latency model to emulate, or None (production networks never emulate)."""
        if not self.latency_matrix or self.latency_matrix.lower() in ("off", "none", "0") or self.network != "testbed":
            return None
        from parsec.model.latency import LatencyModel

        path = None if self.latency_matrix.lower() == "default" else self.latency_matrix
        return LatencyModel.load(path, jitter=self.latency_jitter, loss=self.latency_loss)

    @property
    def production(self) -> bool:
        """A real network (amino or another kad network): never the testbed's file or latency."""
        return self.network != "testbed"

    def resolved_bootstrap(self) -> list[str]:
        """Bootstrap multiaddrs: explicit list, else the network's own.

        testbed: the file the local testbed wrote; amino: the public bootstrap peers;
        custom: a bootstrap file only when one was named explicitly — a production server
        never falls back to (or waits for) the testbed's file.
        """
        if self.bootstrap_peers:
            return list(self.bootstrap_peers)
        if self.network == "amino":
            return list(AMINO_BOOTSTRAP)
        use_file = self.network == "testbed" or "bootstrap_file" in self.model_fields_set
        if use_file and self.bootstrap_file.exists():
            return [ln.strip() for ln in self.bootstrap_file.read_text().splitlines() if ln.strip()]
        return []

    def missing_bootstrap_hint(self) -> str:
        """What to do when there are no bootstrap peers, for this network."""
        if self.network == "testbed":
            return f"no bootstrap peers: start a testbed (parsec testbed) or set PARSEC_BOOTSTRAP_PEERS " \
                   f"(waiting for {self.bootstrap_file})"
        return f"no bootstrap peers for network {self.network!r}: set PARSEC_BOOTSTRAP_PEERS or PARSEC_BOOTSTRAP_FILE"


class TelemetrySettings(BaseSettings):
    """Where ``parsec server`` and ``parsec scheduler`` also serve their Prometheus metrics
    (``/metrics``), under the Go parsec's setting names; no port: not served there (a server
    still answers ``/metrics`` on its API port, a scheduler on ``--metrics-port``)."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_TELEMETRY_", extra="ignore")

    host: str = Field("localhost", description="address of the metrics listener (the Go parsec's default)")
    port: int | None = Field(None, ge=1, le=65535, description="its port; the Go parsec's default is 6666")


SMALLINT_PORT_MAX = 32767  # nodes_ecs.server_port / peer_port are SMALLINT (parsec.net.ports)


class ServerSettings(BaseSettings):
    """A parsec server: HTTP API, libp2p peer, registration and heartbeat."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_SERVER_", extra="ignore")

    fleet: str = Field("default", min_length=1, max_length=200, description=(
        "the fleet label this server registers (free text, as in the Go parsec); schedulers select servers by it"))
    strategy: str | None = Field(None, description=(
        "how this server provides and retrieves: " + ", ".join(FLEETS) + "; unset: optprov or fullrt when "
        "PARSEC_SERVER_DHT_OPTPROV / _FULLRT is true (the Go parsec's settings), else the fleet label when it names "
        "a strategy, else default"))
    dht_optprov: bool = Field(False, description="the Go parsec's setting: optimistic provide (strategy optprov)")
    dht_fullrt: bool = Field(False, description="the Go parsec's setting: full routing table (strategy fullrt)")
    dht_server_mode: bool | None = Field(None, description=(
        "the Go parsec's setting: answer kad requests (a DHT server). Unset: a DHT server (parsec's default; the Go "
        "parsec's is a client); false: a DHT client that asks but never answers (" + ", ".join(CLIENT_MODE_STRATEGIES)
        + ")"))
    dht_alpha: int = Field(GO_ALPHA, description="the Go parsec's setting: lookup concurrency; only go's 10")
    dht_project: str = Field("ipfs", description="the Go parsec's setting: bootstrap project; only 'ipfs'")
    dht_badbits: str | None = Field(None, description="the Go parsec's bad-bits deny list: not supported yet")
    dht_denied_cids: str | None = Field(None, description="the Go parsec's denied-CIDs file: not supported yet")
    leveldb: str | None = Field(None, description="the Go parsec's datastore path: accepted and unused (provider "
                                "records are kept in memory)")
    firehose_stream: str | None = Field(None, description="the Go parsec's AWS Firehose stream: not supported")
    server_host: str = "127.0.0.1"
    server_port: int = Field(7070, ge=0, description="HTTP API port; 0: a free one in 20000-32767")
    peer_host: str = "127.0.0.1"
    peer_port: int = Field(4001, ge=0, description="libp2p TCP port; 0: a free one in 20000-32767")
    startup_delay: Seconds = 0.0
    heartbeat_interval: Seconds = 60.0
    provide_timeout: Seconds = 180.0
    retrieve_timeout: Seconds = 60.0
    rpc_timeout: Seconds = RPC_TIMEOUT
    crawl_interval: Seconds = FULLRT_CRAWL_INTERVAL  # fullrt: time between crawls of the whole network
    max_content_bytes: int = Field(1 << 20, ge=1)
    min_routing_table: int = Field(1, ge=0, description="peers needed before /readiness is 200")
    advertise_host: str | None = None
    region: str | None = Field(None, description="region label; default AWS_REGION, else 'local'")
    name: str | None = None
    # --- who may call, and how much: see README "Threat model"
    auth_token: SecretStr | None = Field(None, description="bearer token required on /provide and /retrieve; "
                                         "unset: no token (the Go server's behaviour)")
    max_concurrent_operations: int = Field(32, ge=1, description="DHT operations in flight at once; the next "
                                           "request is answered 429 with Retry-After")
    retry_after: int = Field(5, ge=1, description="seconds a 429 asks the client to wait")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="request line + headers; larger is refused")
    idle_timeout: Seconds = Field(20.0, gt=0, description="a connection with no request under way (kept alive, "
                                  "or a request head still arriving) is closed after this: a request head must "
                                  "arrive in full within it, however it trickles in")
    body_timeout: Seconds = Field(30.0, gt=0, description="a request body not received within this is refused "
                                  "(408); a client silent this long mid-body is dropped")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value.strip() not in FLEETS:
            raise ValueError(f"unknown strategy {value.strip()!r}; known: {', '.join(FLEETS)}")
        return value.strip()

    @model_validator(mode="after")
    def _resolve_strategy(self) -> ServerSettings:
        """``strategy`` always set after validation, by the rule its description states."""
        flags = [name for name, on in (("optprov", self.dht_optprov), ("fullrt", self.dht_fullrt)) if on]
        if len(flags) == 2:
            raise ValueError("PARSEC_SERVER_DHT_OPTPROV and PARSEC_SERVER_DHT_FULLRT are both true: the Go parsec "
                             "runs optimistic provide on a full routing table, parsec has no such strategy; set one")
        if self.strategy is not None and flags and flags[0] != self.strategy:
            raise ValueError(f"PARSEC_SERVER_STRATEGY={self.strategy} contradicts PARSEC_SERVER_DHT_"
                             f"{flags[0].upper()}=true; set one of them")
        if self.strategy is None:
            self.strategy = flags[0] if flags else self.fleet if self.fleet in FLEETS else "default"
        if self.dht_server_mode is False and self.strategy not in CLIENT_MODE_STRATEGIES:
            raise ValueError(f"PARSEC_SERVER_DHT_SERVER_MODE=false: strategy {self.strategy} always answers kad "
                             f"requests; a DHT client is one of {', '.join(CLIENT_MODE_STRATEGIES)}")
        return self

    @property
    def serves_dht(self) -> bool:
        """Whether the peer answers kad requests (unset server mode: it does)."""
        return self.dht_server_mode is not False

    @field_validator("dht_alpha")
    @classmethod
    def _go_alpha_only(cls, value: int) -> int:
        if value != GO_ALPHA:
            raise ValueError(f"only {GO_ALPHA} (go's and parsec's lookup concurrency) is supported")
        return value

    @field_validator("dht_project")
    @classmethod
    def _ipfs_only(cls, value: str) -> str:
        if value != "ipfs":
            raise ValueError("only 'ipfs' is supported; another kad-dht network: --network custom with its "
                             "--protocol-prefix and --bootstrap")
        return value

    @field_validator("dht_badbits", "dht_denied_cids", "firehose_stream")
    @classmethod
    def _not_supported(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("not supported yet by parsec (see the README's differences from the Go parsec); unset it")
        return value or None

    @field_validator("server_port", "peer_port")
    @classmethod
    def _port_the_original_can_store(cls, value: int) -> int:
        if value > SMALLINT_PORT_MAX:
            raise ValueError(f"above {SMALLINT_PORT_MAX}: the original's nodes_ecs stores ports as SMALLINT and a Go "
                             f"scheduler would read it as {value - 65536}; use 1024-{SMALLINT_PORT_MAX}, or 0 for a "
                             f"free one")
        return value

    @field_validator("auth_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # an empty PARSEC_SERVER_AUTH_TOKEN means: no token
        if len(value.get_secret_value()) < 16:
            raise ValueError("a bearer token needs at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @property
    def listens_everywhere(self) -> bool:
        """The HTTP API is bound to every interface (asked for with 0.0.0.0 / ::)."""
        return self.server_host in ("0.0.0.0", "::", "")


class SchedulerSettings(BaseSettings):
    """A scheduler: which fleets, how often, how many probes, where results go."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_SCHEDULER_", extra="ignore")

    fleets: CsvList = Field(default_factory=lambda: ["default"], min_length=1)
    interval: Seconds = 60.0
    probes: int = Field(1, ge=1, le=100)
    rounds: int | None = Field(None, ge=1)
    duration: Seconds | None = Field(None, gt=0, description="stop starting rounds after this long")
    stop_grace: Seconds = Field(1.0, description="on stop, how long in-flight operations may finish before they "
                                "are cancelled and recorded as such (Ray's job stop SIGKILLs after 3 s)")
    content_bytes: int = Field(1024, ge=1)
    http_timeout: Seconds = 240.0
    readiness_timeout: Seconds = 5.0
    heartbeat_window: Seconds = 120.0
    parquet_dir: Path | None = DEFAULT_STATE_DIR / "parquet"
    parquet_rotate_rows: int = Field(1000, ge=1)
    parquet_rotate_seconds: Seconds = 60.0
    auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("auth_token", "PARSEC_SCHEDULER_AUTH_TOKEN", "PARSEC_SERVER_AUTH_TOKEN"),
        description="bearer token sent to the servers (the servers' PARSEC_SERVER_AUTH_TOKEN)")
    spool_dir: Path = Field(default_factory=lambda: Path.home() / ".parsec" / "spool", description=(
        "the journal of every operation issued and its record until Postgres and Parquet hold it (one file per "
        "fleet set and database); in the home directory because a Ray job runs in a working directory of its own, "
        "and a resubmitted scheduler must find what a killed one left"))
    spool_retry: Seconds = Field(5.0, gt=0, description="how often spooled records are retried while Postgres is "
                                 "unreachable")
    spool_archive: bool = Field(False, description="keep the entries of settled operations in <journal>.archive "
                                "(audits, bench/chaos.py) instead of dropping them")


class ReportSettings(BaseSettings):
    """``parsec report``: what its summary and the fleet comparison flag."""

    model_config = SettingsConfigDict(env_prefix="PARSEC_REPORT_", extra="ignore")

    host_lag_threshold: Seconds = Field(0.05, gt=0, description=(
        "flag an operation whose trace says the process that timed it saw a larger event-loop lag while it ran "
        "(host_lag_ms): its duration may be the host's, not the network's; seconds or a Go duration, e.g. 50ms"))


class TestbedSettings(BaseSettings):
    """The local DHT network: how many peers, in how many processes, and how unreliable.

    The defaults of the unreliable parts are the published measurements of the public DHT:
    ≈45 % of the DHT server addresses crawls see are never reachable (Nebula) but only ≈15 %
    of a routing table's entries are (ProbeLab RFM 19; ``parsec.model.stale``), and half of the
    new peers leave within 2 h (ProbeLab RFM 2). Set ``unreachable=0`` and
    ``churn_session=0`` for a clean network (unit-sized tests, overhead benchmarks).
    """

    __test__ = False  # not a pytest test class despite the name
    model_config = SettingsConfigDict(env_prefix="PARSEC_TESTBED_", extra="ignore")

    peers: int = Field(200, ge=2, le=20000)
    processes: int = Field(2, ge=1, le=64)
    mix: str | None = Field(None, description="peers per implementation, e.g. go=3000,js=1000,py=1000")
    unreachable: float = Field(0.45, ge=0, lt=1, description="share of all peer ids that never answer "
                               "(public DHT: ≈0.45 of addresses seen were never reachable)")
    stale_entries: float = Field(STALE_ENTRIES, ge=0, lt=1, description="share of a routing table's entries that "
                                 "are unreachable ids (RFM 19: ≈0.15); ≥ unreachable: every table lists every one")
    slow_fraction: float = Field(0.0, ge=0, le=1, description="share of py peers that answer late")
    slow_delay: Seconds = 1.0
    churn_session: Seconds = Field(7200.0, description="median online session (and offline gap) of a testbed peer (py, Go, js); "
                                   "0 disables churn (public DHT: half of new peers gone within 2h)")
    host: str = "127.0.0.1"
    k: int = Field(20, ge=1, le=64)
    seed: int | None = None

    @field_validator("mix")
    @classmethod
    def _mix_shape(cls, value: str | None) -> str | None:
        if value:
            parse_mix(value)
        return value

    def composition(self) -> dict[str, int]:
        """Peers per implementation (``py``, ``go``, ``js``)."""
        return parse_mix(self.mix) if self.mix else {"py": self.peers}


IMPLEMENTATIONS = ("py", "go", "js")


def parse_mix(text: str) -> dict[str, int]:
    """``go=3000,js=1000,py=1000`` → {"go": 3000, …}; a bare number means py peers."""
    if text.strip().isdigit():
        return {"py": int(text)}
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, count = part.strip().partition("=")
        if name not in IMPLEMENTATIONS or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"bad testbed mix entry {part.strip()!r}: use e.g. go=3000,js=1000,py=1000")
        mix[name] = mix.get(name, 0) + int(count)
    if sum(mix.values()) < 2:
        raise ValueError("a testbed needs at least 2 peers")
    return mix


def peers_option(text: str | None) -> dict:
    """``--peers 200`` or ``--peers go=3000,js=1000,py=1000`` as TestbedSettings values."""
    if text is None:
        return {}
    return {"peers": int(text)} if text.strip().isdigit() else {"mix": text}


def region_from_env() -> str:
    """The region label: ``AWS_REGION`` as in the original, else ``local``."""
    import os

    return os.environ.get("AWS_REGION") or "local"


_SECRET = re.compile(r"password|token|secret", re.IGNORECASE)


def validation_problems(error: ValidationError, prefix: str) -> list[str]:
    """One line per bad setting, named as the user would set it (env name)."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not field:  # a rule across settings: its message names them
            lines.append(message)
            continue
        env = f"{prefix}{field}".upper()
        given = "***" if _SECRET.search(field) else repr(item.get("input"))
        lines.append(f"{env}: {message} (got {given})")
    return lines


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """The bad settings: one line for one setting, a heading and one line per setting for several."""
    lines = validation_problems(error, prefix)
    if len(lines) == 1:
        return f"invalid setting: {lines[0]}"
    return "invalid settings:\n" + "\n".join(f"  {line}" for line in lines)


def load(cls, prefix: str | None = None, **overrides):
    """Build a settings object; CLI overrides that are None are left to env/defaults.

    Raises ``SystemExit`` with readable lines instead of a pydantic trace.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as error:
        env_prefix = prefix if prefix is not None else cls.model_config.get("env_prefix", "")
        raise SystemExit(describe_validation_error(error, env_prefix)) from None
