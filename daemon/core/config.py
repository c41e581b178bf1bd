"""Typed configuration: `config.toml` overlaid with `PSS_<SECTION>_<KEY>` environment variables (pydantic-settings)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from daemon.core.config_values import (
    CONVERT,
    AtLeastOne,
    Bool,
    Float,
    Int,
    IntTable,
    NotNegative,
    Positive,
    Str,
    Strings,
    check,
)
from daemon.core.instants import MS_PER_DAY, parse_instant
from daemon.core.timebuckets import PARTITION_SPANS

ENV_PREFIX = "PSS_"
DEFAULT_PATH = Path("config.toml")


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type or out of range; the message names the key."""


class _Section(BaseModel):
    # Frozen like the dataclasses were; a misspelt key is an error; defaults go through the same checks, so a
    # check across fields also runs when the field it is about was left out.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ServerConfig(_Section):
    host: Str = "127.0.0.1"
    port: Annotated[Int, check(lambda port: 1 <= port <= 65535, "must be 1..65535")] = 8080
    shutdown_timeout: Annotated[Float, Positive] = 30.0
    min_body_rate: Annotated[Int, NotNegative] = 4096
    body_grace: Annotated[Float, Positive] = 10.0

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the server (anonymous access is allowed there by default)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name other than localhost may resolve to anything


class AuthConfig(_Section):
    allow_anonymous: Bool = False
    refresh: Annotated[Float, Positive] = 5.0
    ingest_events_per_second: Annotated[Float, NotNegative] = 50_000.0
    ingest_burst_events: Annotated[Int, AtLeastOne] = 200_000
    read_requests_per_second: Annotated[Float, NotNegative] = 100.0
    read_burst_requests: Annotated[Int, AtLeastOne] = 200


def _instant_or_empty(text: str) -> str:
    if text:
        parse_instant(text)  # its ValueError is the reason: "not an ISO-8601 timestamp: 'soon'"
    return text


class ClockConfig(_Section):
    now: Annotated[Str, AfterValidator(_instant_or_empty)] = ""


_CONSISTENCY_LEVELS = {"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
_ONE_OF_THE_LEVELS = f"must be one of {', '.join(sorted(_CONSISTENCY_LEVELS))}"
_REPLICATION_CLASSES = {"SimpleStrategy", "NetworkTopologyStrategy"}


class CassandraConfig(_Section):
    contact_points: Annotated[Strings, check(bool, "must name at least one host")] = ("127.0.0.1",)
    port: Int = 9042
    local_dc: Str = "datacenter1"
    keyspace: Annotated[Str, check(str.isidentifier, "must be a plain identifier")] = "player_sessions"
    replication_class: Annotated[
        Str, check(lambda name: name in _REPLICATION_CLASSES, "must be SimpleStrategy or NetworkTopologyStrategy")
    ] = "SimpleStrategy"
    replication_factor: Annotated[Int, AtLeastOne] = 1
    datacenters: IntTable = Field(default_factory=lambda: MappingProxyType({}))
    consistency: Annotated[Str, check(lambda level: level.upper() in _CONSISTENCY_LEVELS, _ONE_OF_THE_LEVELS)] = (
        "LOCAL_QUORUM"
    )
    username: Str = ""
    password: Str = ""
    connect_timeout: Float = 10.0
    request_timeout: Float = 10.0
    country_partition_hours: Annotated[
        Int, check(lambda hours: hours in PARTITION_SPANS, f"must be one of {', '.join(map(str, PARTITION_SPANS))}")
    ] = 24

    @field_validator("datacenters")
    @classmethod
    def _check_datacenters(cls, datacenters: Mapping[str, int], info: ValidationInfo) -> Mapping[str, int]:
        # info.data holds the fields declared above that passed their own checks.
        if info.data.get("replication_class") == "NetworkTopologyStrategy" and not datacenters:
            raise ValueError("must list at least one datacenter for NetworkTopologyStrategy")
        if not all(factor >= 1 for factor in datacenters.values()):
            raise ValueError("replication factors must be at least 1")
        return datacenters


_BATCHING = ("replica_set", "players_apart", "partition")  # cql/grouping.py says what each does
_ONE_OF_THE_MODES = f"must be one of {', '.join(_BATCHING)}"


class IngestConfig(_Section):
    actors: Annotated[Int, check(lambda actors: actors >= 0, "must be 0 (one per core) or more")] = 0
    # Declared before max_queued_events, whose check reads it: pydantic validates fields in declaration order.
    max_batch_events: Annotated[Int, AtLeastOne] = 100_000
    max_queued_events: Int = 200_000
    flush_events: Annotated[Int, AtLeastOne] = 5_000
    linger_ms: Annotated[Float, NotNegative] = 5.0
    max_inflight_writes: Annotated[Int, AtLeastOne] = 256
    inflight_writes_while_answering: Annotated[Int, NotNegative] = 0  # 0: as many as max_inflight_writes
    queue_wait: Annotated[Float, Positive] = 30.0
    write_retry_seconds: Annotated[Float, NotNegative] = 5.0
    max_body_bytes: Annotated[Int, check(lambda size: size >= 1024, "must be at least 1024")] = 64 * 1024 * 1024
    max_future_hours: Annotated[Float, NotNegative] = 24.0
    retention_days: Annotated[Int, check(lambda days: 1 <= days <= 3650, "must be 1..3650")] = 365
    batching: Annotated[Str, check(lambda mode: mode in _BATCHING, _ONE_OF_THE_MODES)] = "players_apart"
    batch_statements: Annotated[Int, check(lambda count: 1 <= count <= 65535, "must be 1..65535")] = 40
    batch_bytes: Annotated[Int, check(lambda size: size >= 256, "must be at least 256")] = 4608
    max_replica_sets: Annotated[Int, AtLeastOne] = 64

    @field_validator("max_queued_events")
    @classmethod
    def _queue_holds_a_batch(cls, max_queued_events: int, info: ValidationInfo) -> int:
        if max_queued_events < info.data.get("max_batch_events", 0):
            raise ValueError("must be at least ingest.max_batch_events (a request is admitted whole)")
        return max_queued_events

    @property
    def retention_ms(self) -> int:
        """How long events are kept, in milliseconds (stored rows' TTL; older events are discarded)."""
        return self.retention_days * MS_PER_DAY


class RollupConfig(_Section):
    interval: Annotated[Float, Positive] = 1.0
    concurrency: Annotated[Int, AtLeastOne] = 16
    poll: Annotated[Float, Positive] = 5.0
    adopt_after: Annotated[Float, NotNegative] = 60.0
    max_direct_minutes: Annotated[Int, NotNegative] = 2000


def _bus_url_or_empty(url: str) -> str:
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("must be empty (this process only) or a redis://host:port/db URL")
        parts.port  # noqa: B018 -- its ValueError is the reason: "Port out of range 0-65535"
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError("the path must be a database number, as in redis://h:p/0")
    return url


class LiveConfig(_Section):
    queue_size: Annotated[Int, AtLeastOne] = 10_000
    heartbeat: Annotated[Float, Positive] = 20.0
    fan_out_interval: Annotated[Float, check(lambda seconds: seconds >= 0, "must be 0 or more")] = 0.05
    bus: Annotated[Str, AfterValidator(_bus_url_or_empty)] = ""
    bus_stream: Annotated[Str, check(bool, "must not be empty")] = "pss:starts"
    bus_maxlen: Annotated[Int, AtLeastOne] = 10_000
    bus_buffer: Annotated[Int, AtLeastOne] = 50_000
    dedup_window: Annotated[Int, AtLeastOne] = 100_000
    message_rate: Annotated[Float, Positive] = 5.0
    message_burst: Annotated[Int, AtLeastOne] = 20


class NodeConfig(_Section):
    dir: Str = ".cassandra"
    version: Str = "5.0.8"
    heap: Str = "1g"
    listen_address: Str = "127.0.0.1"
    native_port: Int = 9042
    storage_port: Int = 7000
    start_timeout: Annotated[Float, Positive] = 180.0


class ClusterConfig(_Section):
    dir: Str = ".cassandra-cluster"
    # Node i listens on 127.0.0.i, so the last octet bounds the count.
    nodes: Annotated[Int, check(lambda nodes: 1 <= nodes <= 254, "must be 1..254")] = 3
    heap: Str = "512m"
    native_port: Annotated[Int, check(lambda port: 1 <= port <= 65535, "must be 1..65535")] = 9043
    storage_port: Annotated[Int, check(lambda port: 1 <= port <= 65535, "must be 1..65535")] = 7001
    start_timeout: Annotated[Float, Positive] = 240.0

    @field_validator("storage_port")
    @classmethod
    def _ports_differ(cls, storage_port: int, info: ValidationInfo) -> int:
        if storage_port == info.data.get("native_port"):
            raise ValueError("must differ from cluster.native_port (every node listens on both)")
        return storage_port


class BusConfig(_Section):
    dir: Str = ".redis"
    host: Str = "127.0.0.1"
    port: Annotated[Int, check(lambda port: 1 <= port <= 65535, "must be 1..65535")] = 6390
    start_timeout: Annotated[Float, Positive] = 10.0


class CompatConfig(_Section):
    raw_file: Str = ""


class MetricsConfig(_Section):
    # A listener of its own, on loopback by default: the metrics are never open to the world unless bound elsewhere.
    host: Str = "127.0.0.1"
    port: Annotated[Int, check(lambda port: 0 <= port <= 65535, "must be 0 (off) or 1..65535")] = 9108


_LOG_FORMATS = ("text", "json")


class LogConfig(_Section):
    format: Annotated[Str, check(lambda name: name in _LOG_FORMATS, 'must be "text" or "json"')] = "text"


class Config(BaseSettings):
    # case_sensitive: TOML section names match exactly ([Server] is an unknown key, as before).
    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=True, env_prefix=ENV_PREFIX)

    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    cassandra: CassandraConfig = Field(default_factory=CassandraConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    rollups: RollupConfig = Field(default_factory=RollupConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    compat: CompatConfig = Field(default_factory=CompatConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Config(...) holds its arguments and the defaults only, never the process environment or ./config.toml,
        # as the dataclass did. load_config() passes the file and the environment it was given.
        return (init_settings,)


class _EnvSource(PydanticBaseSettingsSource):
    """`PSS_<SECTION>_<KEY>` from a given mapping, for known keys only (other names are ignored), converted here.

    Not pydantic-settings' EnvSettingsSource: it reads only os.environ, JSON-decodes lists and tables, and would
    pass an unknown PSS_SERVER_PROT on to fail as an extra key. (Its env_nested_max_split=1 would split
    PSS_INGEST_MAX_QUEUED_EVENTS correctly.)
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # abstract in the base class; __call__ reads whole sections instead

    def __call__(self) -> dict[str, Any]:
        values: dict[str, dict[str, Any]] = {}
        for section, section_field in self.settings_cls.model_fields.items():
            section_type = cast(type[BaseModel], section_field.annotation)
            for key, key_field in section_type.model_fields.items():
                name = f"{self.config['env_prefix']}{section}_{key}".upper()
                if name in self.environ:
                    values.setdefault(section, {})[key] = _from_env(self.environ[name], key_field.annotation, name)
        return values


def _from_env(text: str, annotation: Any, name: str) -> Any:
    """Environment text as a value: lists comma separated, tables `name=value` pairs; errors name the variable."""
    value: Any = text
    if annotation == tuple[str, ...]:
        value = [part.strip() for part in text.split(",") if part.strip()]
    elif annotation == Mapping[str, int]:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"{name}: expected name=value pairs separated by commas")
        value = {key.strip(): number.strip() for key, number in pairs}
    try:
        # A table comes back read-only, not a dict, so it replaces the file's instead of being merged into it.
        return CONVERT[annotation](value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (default `config.toml`, optional when absent), apply environment overrides, validate."""
    path = path if path is not None else Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_PATH))
    environ = os.environ if environ is None else environ
    if not path.is_file() and path != DEFAULT_PATH:
        raise ConfigError(f"{path}: config file not found")
    try:
        toml = TomlConfigSettingsSource(Config, toml_file=path)  # reads nothing when the default file is absent
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        # Per-call sources, highest priority first: the environment wins over the file. (settings_customise_sources
        # takes no arguments, so it cannot see `path` and `environ`.)
        return Config(_build_sources=((_EnvSource(Config, environ), toml), {}))
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    """The first error as one line naming the key; an unknown key is reported first, as before."""
    error = min(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
    # loc is (section, key, then a list index or table name): the message names the key only.
    key = ".".join(str(part) for part in error["loc"][:2])
    if error["type"] == "extra_forbidden":
        return ConfigError(f"{key}: unknown key")
    if error["type"] == "model_type":  # a section that is not a table
        return ConfigError(f"{key}: expected a table")
    return ConfigError(f"{key}: {error.get('ctx', {}).get('error', error['msg'])}")


_Model = TypeVar("_Model", bound=BaseModel)


def replace(model: _Model, **changes: Any) -> _Model:
    """`dataclasses.replace` for these models: a copy with `changes`, validated (model_copy checks nothing)."""
    return type(model).model_validate({**dict(model), **changes})
