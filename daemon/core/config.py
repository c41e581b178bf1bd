"""Typed configuration: `config.toml` overlaid with `PSS_<SECTION>_<KEY>` environment variables."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.instants import MS_PER_DAY, parse_instant

ENV_PREFIX = "PSS_"
DEFAULT_PATH = Path("config.toml")


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    shutdown_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ClockConfig:
    now: str = ""


@dataclass(frozen=True, slots=True)
class CassandraConfig:
    contact_points: tuple[str, ...] = ("127.0.0.1",)
    port: int = 9042
    local_dc: str = "datacenter1"
    keyspace: str = "player_sessions"
    replication_class: str = "SimpleStrategy"
    replication_factor: int = 1
    datacenters: Mapping[str, int] = field(default_factory=dict)
    consistency: str = "LOCAL_QUORUM"
    username: str = ""
    password: str = ""
    connect_timeout: float = 10.0
    request_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class IngestConfig:
    actors: int = 0
    max_queued_events: int = 200_000
    flush_events: int = 5_000
    linger_ms: float = 5.0
    max_inflight_writes: int = 256
    queue_wait: float = 30.0
    write_retry_seconds: float = 5.0
    max_batch_events: int = 100_000
    max_body_bytes: int = 64 * 1024 * 1024
    max_future_hours: float = 24.0
    retention_days: int = 365

    @property
    def retention_ms(self) -> int:
        """How long events and their rows are kept: older events are discarded, rows expire then (TTL)."""
        return self.retention_days * MS_PER_DAY


@dataclass(frozen=True, slots=True)
class RollupConfig:
    interval: float = 1.0
    concurrency: int = 8


@dataclass(frozen=True, slots=True)
class LiveConfig:
    queue_size: int = 10_000
    heartbeat: float = 20.0
    fan_out_interval: float = 0.05


@dataclass(frozen=True, slots=True)
class NodeConfig:
    dir: str = ".cassandra"
    version: str = "5.0.8"
    heap: str = "1g"
    listen_address: str = "127.0.0.1"
    native_port: int = 9042
    storage_port: int = 7000
    start_timeout: float = 180.0


@dataclass(frozen=True, slots=True)
class CompatConfig:
    raw_file: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    cassandra: CassandraConfig = field(default_factory=CassandraConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    rollups: RollupConfig = field(default_factory=RollupConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)


_CONSISTENCY_LEVELS = {"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (default `config.toml`, optional when absent), apply environment overrides, validate."""
    path = path if path is not None else Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_PATH))
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    elif path != DEFAULT_PATH:
        raise ConfigError(f"{path}: config file not found")
    config: Config = _build(Config, raw, "", environ)
    _validate(config)
    return config


def _build(cls: type, raw: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{prefix}{sorted(unknown)[0]}: unknown key")
    values: dict[str, Any] = {}
    for name in names:
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), raw.get(name, {}), f"{key}.", environ)
            continue
        env_name = ENV_PREFIX + key.replace(".", "_").upper()
        if env_name in environ:
            values[name] = _from_env(environ[env_name], hint, env_name)
        elif name in raw:
            values[name] = _coerce(raw[name], hint, key)
    return cls(**values)


def _from_env(text: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _coerce([part.strip() for part in text.split(",") if part.strip()], hint, key)
    if origin in (Mapping, dict) or hint is Mapping:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"{key}: expected name=value pairs separated by commas")
        return _coerce({name.strip(): value.strip() for name, value in pairs}, hint, key)
    if hint is bool:
        return _coerce(text.strip().lower() in {"1", "true", "yes", "on"}, hint, key)
    return _coerce(text, hint, key)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if hint is int:
            if isinstance(value, bool):
                raise TypeError
            return int(value) if isinstance(value, int) else int(str(value), 0)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if origin is tuple:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_coerce(item, str, key) for item in value)
        if origin in (Mapping, dict) or isinstance(origin, types.GenericAlias):
            if not isinstance(value, Mapping):
                raise TypeError
            return types.MappingProxyType({str(k): _coerce(v, int, key) for k, v in value.items()})
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {_describe(hint)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list of strings"
    if origin in (Mapping, dict):
        return "a table of name = integer"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))


def _validate(config: Config) -> None:
    """Range checks that types alone cannot express."""
    checks: list[tuple[bool, str, str]] = [
        (1 <= config.server.port <= 65535, "server.port", "must be 1..65535"),
        (config.server.shutdown_timeout > 0, "server.shutdown_timeout", "must be positive"),
        (bool(config.cassandra.contact_points), "cassandra.contact_points", "must name at least one host"),
        (config.cassandra.keyspace.isidentifier(), "cassandra.keyspace", "must be a plain identifier"),
        (
            config.cassandra.replication_class in {"SimpleStrategy", "NetworkTopologyStrategy"},
            "cassandra.replication_class",
            "must be SimpleStrategy or NetworkTopologyStrategy",
        ),
        (config.cassandra.replication_factor >= 1, "cassandra.replication_factor", "must be at least 1"),
        (
            config.cassandra.replication_class != "NetworkTopologyStrategy" or bool(config.cassandra.datacenters),
            "cassandra.datacenters",
            "must list at least one datacenter for NetworkTopologyStrategy",
        ),
        (
            all(factor >= 1 for factor in config.cassandra.datacenters.values()),
            "cassandra.datacenters",
            "replication factors must be at least 1",
        ),
        (
            config.cassandra.consistency.upper() in _CONSISTENCY_LEVELS,
            "cassandra.consistency",
            f"must be one of {', '.join(sorted(_CONSISTENCY_LEVELS))}",
        ),
        (config.ingest.actors >= 0, "ingest.actors", "must be 0 (one per core) or more"),
        (config.ingest.flush_events >= 1, "ingest.flush_events", "must be at least 1"),
        (
            config.ingest.max_queued_events >= config.ingest.max_batch_events,
            "ingest.max_queued_events",
            "must be at least ingest.max_batch_events (a request is admitted whole)",
        ),
        (config.ingest.linger_ms >= 0, "ingest.linger_ms", "must not be negative"),
        (config.ingest.max_inflight_writes >= 1, "ingest.max_inflight_writes", "must be at least 1"),
        (config.ingest.queue_wait > 0, "ingest.queue_wait", "must be positive"),
        (config.ingest.write_retry_seconds >= 0, "ingest.write_retry_seconds", "must not be negative"),
        (config.ingest.max_batch_events >= 1, "ingest.max_batch_events", "must be at least 1"),
        (config.ingest.max_body_bytes >= 1024, "ingest.max_body_bytes", "must be at least 1024"),
        (config.ingest.max_future_hours >= 0, "ingest.max_future_hours", "must not be negative"),
        (1 <= config.ingest.retention_days <= 3650, "ingest.retention_days", "must be 1..3650"),
        (config.rollups.interval > 0, "rollups.interval", "must be positive"),
        (config.rollups.concurrency >= 1, "rollups.concurrency", "must be at least 1"),
        (config.live.queue_size >= 1, "live.queue_size", "must be at least 1"),
        (config.live.heartbeat > 0, "live.heartbeat", "must be positive"),
        (config.live.fan_out_interval >= 0, "live.fan_out_interval", "must be 0 or more"),
        (config.node.start_timeout > 0, "node.start_timeout", "must be positive"),
    ]
    for ok, key, reason in checks:
        if not ok:
            raise ConfigError(f"{key}: {reason}")
    if config.clock.now:
        try:
            parse_instant(config.clock.now)
        except ValueError as exc:
            raise ConfigError(f"clock.now: {exc}") from None
