"""Unit tests of configuration loading, environment overrides, one-line errors and copies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
from pydantic import ValidationError

from daemon.core.clock import Clock
from daemon.core.config import (
    DEFAULT_PATH,
    ENV_PREFIX,
    CassandraConfig,
    ClockConfig,
    Config,
    ConfigError,
    IngestConfig,
    LiveConfig,
    NodeConfig,
    ServerConfig,
    load_config,
    replace,
)
from daemon.core.instants import format_instant, parse_instant

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

# The repository runs its tests with warnings as errors; so do these (pydantic warns on odd serialisations).
pytestmark = pytest.mark.filterwarnings("error")


def load_toml(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    return load_config(path, environ={} if environ is None else environ)


# --- ported from tests/test_config.py ---


def test_the_checked_in_config_loads_with_the_demo_clock() -> None:
    config = load_config(REPO_CONFIG, environ={})
    assert config.clock.now == "2016-12-01T00:00:00Z"
    assert config.cassandra.replication_class == "SimpleStrategy"


def test_the_checked_in_config_serves_metrics_on_loopback_only() -> None:
    config = load_config(REPO_CONFIG, environ={})
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9108)
    assert config.log.format == "text"
    assert load_config(REPO_CONFIG, environ={"PSS_METRICS_PORT": "0"}).metrics.port == 0  # 0 = no listener


def test_environment_overrides_every_kind_of_value() -> None:
    config = load_config(
        REPO_CONFIG,
        environ={
            "PSS_SERVER_PORT": "9090",
            "PSS_CASSANDRA_CONTACT_POINTS": "10.0.0.1, 10.0.0.2",
            "PSS_CASSANDRA_REPLICATION_CLASS": "NetworkTopologyStrategy",
            "PSS_CASSANDRA_DATACENTERS": "dc1=3,dc2=2",
            "PSS_INGEST_LINGER_MS": "1.5",
            "PSS_CLOCK_NOW": "",
        },
    )
    assert config.server.port == 9090
    assert config.cassandra.contact_points == ("10.0.0.1", "10.0.0.2")
    assert dict(config.cassandra.datacenters) == {"dc1": 3, "dc2": 2}
    assert config.ingest.linger_ms == 1.5
    assert config.clock.now == ""


def test_cli_prints_one_line_for_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 70000\n")
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(bad), "schema", "show"],
        cwd=REPO_CONFIG.parent, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: server.port: must be 1..65535"


def test_clock_frozen_and_real() -> None:
    frozen = Clock.from_setting("2016-12-01T00:00:00Z")
    assert frozen.frozen and format_instant(frozen.now()) == "2016-12-01T00:00:00Z"
    assert frozen.now_ms() == 1_480_550_400_000
    assert not Clock.from_setting("").frozen
    assert format_instant(parse_instant("2016-11-22T22:40:50.5+02:00")) == "2016-11-22T20:40:50.500000Z"


def test_environment_values_of_each_type() -> None:
    config = load_config(
        REPO_CONFIG,
        environ={
            "PSS_SERVER_HOST": "0.0.0.0",  # str
            "PSS_SERVER_PORT": "0x2382",  # int, read with base 0 as before
            "PSS_SERVER_SHUTDOWN_TIMEOUT": "2",  # float from integer text
            "PSS_INGEST_MAX_QUEUED_EVENTS": "300_000",  # a key with underscores: the section is the first word
            "PSS_INGEST_MAX_BATCH_EVENTS": "250000",
            "PSS_CASSANDRA_CONTACT_POINTS": " a ,, b ,",  # empty parts dropped
            "PSS_CASSANDRA_DATACENTERS": " dc1 = 3 , dc2=2 ",
            "PSS_CASSANDRA_PASSWORD": "s3cret=,x",  # a str is taken whole
            "PSS_COMPAT_RAW_FILE": "",
        },
    )
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9090
    assert config.server.shutdown_timeout == 2.0 and isinstance(config.server.shutdown_timeout, float)
    assert (config.ingest.max_queued_events, config.ingest.max_batch_events) == (300_000, 250_000)
    assert config.cassandra.contact_points == ("a", "b")
    assert dict(config.cassandra.datacenters) == {"dc1": 3, "dc2": 2}
    assert config.cassandra.password == "s3cret=,x"
    assert config.compat.raw_file == ""


def test_environment_wins_over_the_file_and_the_file_over_defaults(tmp_path: Path) -> None:
    config = load_toml(tmp_path, "[server]\nport = 1111\nhost = 'file'\n", {"PSS_SERVER_PORT": "2222"})
    assert (config.server.port, config.server.host) == (2222, "file")
    assert config.server.shutdown_timeout == ServerConfig().shutdown_timeout


def test_an_environment_table_or_list_replaces_the_files(tmp_path: Path) -> None:
    toml = "[cassandra]\ndatacenters = { dc1 = 3 }\ncontact_points = ['a', 'b']\n"
    config = load_toml(tmp_path, toml, {"PSS_CASSANDRA_DATACENTERS": "dc2=2", "PSS_CASSANDRA_CONTACT_POINTS": "c"})
    assert (dict(config.cassandra.datacenters), config.cassandra.contact_points) == ({"dc2": 2}, ("c",))
    # They may be empty: the range check then names the key.
    config = load_toml(tmp_path, toml, {"PSS_CASSANDRA_DATACENTERS": ""})
    assert dict(config.cassandra.datacenters) == {}
    with pytest.raises(ConfigError, match=r"^cassandra\.contact_points: must name at least one host$"):
        load_toml(tmp_path, "", {"PSS_CASSANDRA_CONTACT_POINTS": " , "})


def test_unknown_and_lower_case_environment_names_are_ignored(tmp_path: Path) -> None:
    environ = {
        "PSS_SERVER_PROT": "1",
        "PSS_BOGUS_KEY": "x",
        "PSS_CONFIG": "/nowhere.toml",  # only read from os.environ, and only to find the file
        "PSS_SERVER": "x",
        "pss_server_port": "1",
        "PSS_INGEST_MAX": "1",
    }
    assert load_toml(tmp_path, "", environ) == Config()


def test_pss_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[server]\nport = 7070\n")
    monkeypatch.setenv("PSS_CONFIG", str(path))
    assert load_config(environ={}).server.port == 7070
    monkeypatch.setenv("PSS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError) as error:
        load_config(environ={})
    assert str(error.value) == f"{tmp_path / 'missing.toml'}: config file not found"


def test_the_default_file_is_read_when_present_and_optional_when_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PSS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}) == Config()
    (tmp_path / DEFAULT_PATH).write_text("[live]\nqueue_size = 7\n")
    assert load_config(environ={}).live.queue_size == 7


def test_environ_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSS_LIVE_HEARTBEAT", "3.5")
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path).live.heartbeat == 3.5


def test_every_key_has_an_environment_name() -> None:
    # What tests/test_containers.py's config_env_names() computes with dataclasses.fields today.
    names = {
        f"{ENV_PREFIX}{section}_{key}".upper()
        for section, field in Config.model_fields.items()
        for key in field.annotation.model_fields  # type: ignore[union-attr]
    }
    assert len(names) == 77
    assert {"PSS_INGEST_MAX_QUEUED_EVENTS", "PSS_CASSANDRA_CONTACT_POINTS", "PSS_CLOCK_NOW"} <= names
    # Each name reaches its key: a changed value of the right kind comes through.
    valid_text = {
        "keyspace": "ks",
        "replication_class": "NetworkTopologyStrategy",
        "consistency": "ONE",
        "now": "2020-01-01",
        "bus": "redis://127.0.0.1:6390/0",
        "format": "json",
        "batching": "partition",
    }
    valid_numbers = {"country_partition_hours": 12}  # a span must tile a day
    for name in names:
        section, key = name.removeprefix(ENV_PREFIX).lower().split("_", 1)
        default = getattr(getattr(Config(), section), key)
        expected: object
        if isinstance(default, (int, float)):
            expected = valid_numbers.get(key, default + 1)
            text = str(expected)
        elif isinstance(default, str):
            text = expected = valid_text.get(key, "x")
        elif isinstance(default, tuple):
            text, expected = "x,y", ("x", "y")
        else:
            text, expected = "dc=1", MappingProxyType({"dc": 1})
        loaded = load_config(REPO_CONFIG, {name: text, "PSS_CASSANDRA_DATACENTERS": "dc=1"})
        assert getattr(getattr(loaded, section), key) == expected, name


# --- what TOML accepts, as before ---


def test_lenient_values_accepted_as_before(tmp_path: Path) -> None:
    config = load_toml(
        tmp_path,
        "[server]\nport = '8081'\nshutdown_timeout = 5\n"  # an int as text; a TOML int for a float
        "[ingest]\nlinger_ms = '1.5'\n"
        "[cassandra]\nconsistency = 'local_one'\ndatacenters = { dc1 = '3' }\n",
    )
    assert config.server.port == 8081
    assert config.server.shutdown_timeout == 5.0 and isinstance(config.server.shutdown_timeout, float)
    assert config.ingest.linger_ms == 1.5
    assert config.cassandra.consistency == "local_one"  # checked case-insensitively, kept as written
    assert dict(config.cassandra.datacenters) == {"dc1": 3}


def test_types_seen_by_callers(tmp_path: Path) -> None:
    config = load_toml(tmp_path, "[cassandra]\ncontact_points = ['a', 'b']\ndatacenters = { dc1 = 3 }\n")
    assert config.cassandra.contact_points == ("a", "b")
    for datacenters in (config.cassandra.datacenters, Config().cassandra.datacenters):
        assert isinstance(datacenters, MappingProxyType)
        with pytest.raises(TypeError):
            datacenters["dc9"] = 1  # type: ignore[index]
    assert config.model_dump()["cassandra"]["datacenters"] == {"dc1": 3}  # and no serializer warning


def test_retention_ms() -> None:
    assert IngestConfig().retention_ms == 365 * 86_400_000
    assert IngestConfig(retention_days=2).retention_ms == 172_800_000


# --- one-line errors naming the key ---

TYPE_AND_KEY_ERRORS = [
    ("[server]\nport = 'x'\n", {}, "server.port: expected an integer, got 'x'"),
    ("[server]\nport = 80.0\n", {}, "server.port: expected an integer, got 80.0"),
    ("[server]\nport = true\n", {}, "server.port: expected an integer, got True"),
    ("[server]\nport = '08'\n", {}, "server.port: expected an integer, got '08'"),
    ("[server]\nshutdown_timeout = 'soon'\n", {}, "server.shutdown_timeout: expected a number, got 'soon'"),
    ("[server]\nshutdown_timeout = false\n", {}, "server.shutdown_timeout: expected a number, got False"),
    ("[server]\nshutdown_timeout = [1]\n", {}, "server.shutdown_timeout: expected a number, got [1]"),
    ("[server]\nhost = 1\n", {}, "server.host: expected a string, got 1"),
    ("[cassandra]\ncontact_points = 'a'\n", {}, "cassandra.contact_points: expected a list of strings, got 'a'"),
    ("[cassandra]\ncontact_points = ['a', 1]\n", {}, "cassandra.contact_points: expected a string, got 1"),
    ("[cassandra]\ndatacenters = 3\n", {}, "cassandra.datacenters: expected a table of name = integer, got 3"),
    ("[cassandra]\ndatacenters = { dc1 = 'x' }\n", {}, "cassandra.datacenters: expected an integer, got 'x'"),
    ("[cassandra]\ndatacenters = { dc1 = true }\n", {}, "cassandra.datacenters: expected an integer, got True"),
    ("[server]\nprot = 1\n", {}, "server.prot: unknown key"),
    ("[server]\nport = 'x'\nprot = 1\n", {}, "server.prot: unknown key"),  # an unknown key is reported first
    ("server = 5\n", {}, "server: expected a table"),
    ("server = [1]\n", {}, "server: expected a table"),
    ("[bogus]\nx = 1\n", {}, "bogus: unknown key"),
    ("[Server]\nport = 1\n", {}, "Server: unknown key"),
    # A wrong type from the environment names the variable, as before.
    ("", {"PSS_SERVER_PORT": "x"}, "PSS_SERVER_PORT: expected an integer, got 'x'"),
    ("", {"PSS_SERVER_PORT": ""}, "PSS_SERVER_PORT: expected an integer, got ''"),
    ("", {"PSS_SERVER_PORT": "1.5"}, "PSS_SERVER_PORT: expected an integer, got '1.5'"),
    ("", {"PSS_LIVE_HEARTBEAT": "often"}, "PSS_LIVE_HEARTBEAT: expected a number, got 'often'"),
    (
        "",
        {"PSS_CASSANDRA_DATACENTERS": "dc1"},
        "PSS_CASSANDRA_DATACENTERS: expected name=value pairs separated by commas",
    ),
    (
        "",
        {"PSS_CASSANDRA_DATACENTERS": "dc1=3,dc2"},
        "PSS_CASSANDRA_DATACENTERS: expected name=value pairs separated by commas",
    ),
    ("", {"PSS_CASSANDRA_DATACENTERS": "dc1=x"}, "PSS_CASSANDRA_DATACENTERS: expected an integer, got 'x'"),
]

NOT_A_BUS_URL = "must be empty (this process only) or a redis://host:port/db URL"
RANGE_ERRORS = [
    ("PSS_SERVER_PORT", "0", "server.port: must be 1..65535"),
    ("PSS_SERVER_PORT", "65536", "server.port: must be 1..65535"),
    ("PSS_SERVER_SHUTDOWN_TIMEOUT", "0", "server.shutdown_timeout: must be positive"),
    ("PSS_CASSANDRA_CONTACT_POINTS", "", "cassandra.contact_points: must name at least one host"),
    ("PSS_CASSANDRA_KEYSPACE", "player-sessions", "cassandra.keyspace: must be a plain identifier"),
    (
        "PSS_CASSANDRA_REPLICATION_CLASS",
        "Simple",
        "cassandra.replication_class: must be SimpleStrategy or NetworkTopologyStrategy",
    ),
    ("PSS_CASSANDRA_REPLICATION_FACTOR", "0", "cassandra.replication_factor: must be at least 1"),
    ("PSS_CASSANDRA_DATACENTERS", "dc1=0", "cassandra.datacenters: replication factors must be at least 1"),
    (
        "PSS_CASSANDRA_CONSISTENCY",
        "MOST",
        "cassandra.consistency: must be one of ALL, EACH_QUORUM, LOCAL_ONE, LOCAL_QUORUM, ONE, QUORUM, THREE, TWO",
    ),
    ("PSS_INGEST_ACTORS", "-1", "ingest.actors: must be 0 (one per core) or more"),
    ("PSS_INGEST_FLUSH_EVENTS", "0", "ingest.flush_events: must be at least 1"),
    ("PSS_INGEST_BATCHING", "token", "ingest.batching: must be one of replica_set, players_apart, partition"),
    ("PSS_INGEST_BATCH_STATEMENTS", "65536", "ingest.batch_statements: must be 1..65535"),
    ("PSS_INGEST_BATCH_BYTES", "100", "ingest.batch_bytes: must be at least 256"),
    ("PSS_INGEST_MAX_REPLICA_SETS", "0", "ingest.max_replica_sets: must be at least 1"),
    (
        "PSS_INGEST_MAX_QUEUED_EVENTS",
        "99999",
        "ingest.max_queued_events: must be at least ingest.max_batch_events (a request is admitted whole)",
    ),
    (
        "PSS_INGEST_MAX_BATCH_EVENTS",
        "200001",
        "ingest.max_queued_events: must be at least ingest.max_batch_events (a request is admitted whole)",
    ),
    ("PSS_INGEST_LINGER_MS", "-0.1", "ingest.linger_ms: must not be negative"),
    ("PSS_INGEST_MAX_INFLIGHT_WRITES", "0", "ingest.max_inflight_writes: must be at least 1"),
    ("PSS_INGEST_QUEUE_WAIT", "0", "ingest.queue_wait: must be positive"),
    ("PSS_INGEST_WRITE_RETRY_SECONDS", "-1", "ingest.write_retry_seconds: must not be negative"),
    ("PSS_INGEST_MAX_BATCH_EVENTS", "0", "ingest.max_batch_events: must be at least 1"),
    ("PSS_INGEST_MAX_BODY_BYTES", "1023", "ingest.max_body_bytes: must be at least 1024"),
    ("PSS_INGEST_MAX_FUTURE_HOURS", "-1", "ingest.max_future_hours: must not be negative"),
    ("PSS_INGEST_RETENTION_DAYS", "0", "ingest.retention_days: must be 1..3650"),
    ("PSS_INGEST_RETENTION_DAYS", "3651", "ingest.retention_days: must be 1..3650"),
    ("PSS_ROLLUPS_INTERVAL", "0", "rollups.interval: must be positive"),
    ("PSS_ROLLUPS_CONCURRENCY", "0", "rollups.concurrency: must be at least 1"),
    ("PSS_LIVE_QUEUE_SIZE", "0", "live.queue_size: must be at least 1"),
    ("PSS_LIVE_HEARTBEAT", "0", "live.heartbeat: must be positive"),
    ("PSS_LIVE_FAN_OUT_INTERVAL", "-0.01", "live.fan_out_interval: must be 0 or more"),
    ("PSS_NODE_START_TIMEOUT", "0", "node.start_timeout: must be positive"),
    ("PSS_LIVE_BUS", "http://127.0.0.1:6390/0", f"live.bus: {NOT_A_BUS_URL}"),
    ("PSS_LIVE_BUS", "127.0.0.1:6390", f"live.bus: {NOT_A_BUS_URL}"),
    ("PSS_LIVE_BUS", "redis://127.0.0.1:65536/0", "live.bus: Port out of range 0-65535"),
    ("PSS_LIVE_BUS", "redis://h:6390/zero", "live.bus: the path must be a database number, as in redis://h:p/0"),
    ("PSS_LIVE_BUS_STREAM", "", "live.bus_stream: must not be empty"),
    ("PSS_LIVE_BUS_MAXLEN", "0", "live.bus_maxlen: must be at least 1"),
    ("PSS_LIVE_BUS_BUFFER", "0", "live.bus_buffer: must be at least 1"),
    ("PSS_LIVE_DEDUP_WINDOW", "0", "live.dedup_window: must be at least 1"),
    ("PSS_BUS_PORT", "65536", "bus.port: must be 1..65535"),
    ("PSS_METRICS_PORT", "65536", "metrics.port: must be 0 (off) or 1..65535"),
    ("PSS_METRICS_PORT", "-1", "metrics.port: must be 0 (off) or 1..65535"),
    ("PSS_LOG_FORMAT", "xml", 'log.format: must be "text" or "json"'),
    ("PSS_BUS_START_TIMEOUT", "0", "bus.start_timeout: must be positive"),
    ("PSS_CLOCK_NOW", "soon", "clock.now: not an ISO-8601 timestamp: 'soon'"),
    ("PSS_CLOCK_NOW", " ", "clock.now: empty timestamp"),
]

FILE_ERRORS = [
    ("[clock]\nnow = 'soon'\n", "clock.now: not an ISO-8601 timestamp: 'soon'"),
    (
        "[cassandra]\nreplication_class = 'NetworkTopologyStrategy'\n",
        "cassandra.datacenters: must list at least one datacenter for NetworkTopologyStrategy",
    ),
    (
        "[ingest]\nmax_queued_events = 10\nmax_batch_events = 20\n",
        "ingest.max_queued_events: must be at least ingest.max_batch_events (a request is admitted whole)",
    ),
    ("[server]\nport = 70000\n", "server.port: must be 1..65535"),
]


@pytest.mark.parametrize(("toml", "environ", "message"), TYPE_AND_KEY_ERRORS)
def test_type_and_key_errors(tmp_path: Path, toml: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_toml(tmp_path, toml, environ)
    assert str(error.value) == message


@pytest.mark.parametrize(("name", "value", "message"), RANGE_ERRORS)
def test_range_errors(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_toml(tmp_path, "", {name: value})
    assert str(error.value) == message


@pytest.mark.parametrize(("toml", "message"), FILE_ERRORS)
def test_range_errors_from_the_file(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_toml(tmp_path, toml)
    assert str(error.value) == message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cassandra\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value).startswith(f"{path}: not valid TOML: ")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.toml", environ={})
    assert str(error.value) == f"{tmp_path / 'nope.toml'}: config file not found"


def test_the_valid_extremes_pass() -> None:
    environ = {
        "PSS_SERVER_PORT": "65535",
        "PSS_INGEST_ACTORS": "0",
        "PSS_INGEST_MAX_QUEUED_EVENTS": "100000",  # == max_batch_events
        "PSS_INGEST_LINGER_MS": "0",
        "PSS_INGEST_MAX_BODY_BYTES": "1024",
        "PSS_INGEST_RETENTION_DAYS": "3650",
        "PSS_LIVE_FAN_OUT_INTERVAL": "0",
        "PSS_CASSANDRA_REPLICATION_CLASS": "NetworkTopologyStrategy",
        "PSS_CASSANDRA_DATACENTERS": "dc1=1",
    }
    config = load_config(REPO_CONFIG, environ)
    assert config.ingest.max_queued_events == config.ingest.max_batch_events == 100_000


# --- direct construction, frozen sections and copies ---


def test_direct_construction_uses_defaults_and_arguments_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("[server]\nport = 1\n")
    monkeypatch.setenv("PSS_SERVER_PORT", "2")
    monkeypatch.setenv("PSS_LIVE_QUEUE_SIZE", "3")
    config = Config(live=LiveConfig(queue_size=5))
    assert config.live == LiveConfig(queue_size=5)
    assert config.server == ServerConfig() and config.server.port == 8080
    with pytest.raises(ValidationError):
        LiveConfig(queue_size=0)  # sections check their ranges when built directly, too


@pytest.mark.parametrize(
    "assign",
    [
        lambda config: setattr(config, "server", ServerConfig()),
        lambda config: setattr(config.server, "port", 1),
        lambda config: setattr(config.cassandra, "contact_points", ("x",)),
        lambda config: setattr(config.ingest, "actors", 3),
        lambda config: setattr(config.node, "dir", "/tmp"),
    ],
)
def test_config_and_sections_are_frozen(assign: object) -> None:
    config = load_config(REPO_CONFIG, environ={})
    with pytest.raises(ValidationError, match="frozen"):
        assign(config)  # type: ignore[operator]


def test_replace_copies_with_overrides() -> None:
    base = load_config(REPO_CONFIG, environ={})
    # tests/test_gen.py
    config = replace(Config(), clock=ClockConfig(now="2016-12-01T00:00:00Z"))
    assert config.clock.now == "2016-12-01T00:00:00Z" and config.server == Config().server
    # tests/conftest.py config_for(): each section, then the whole config
    overrides = {"ingest": {"actors": 2, "linger_ms": 2.0}, "server": {"shutdown_timeout": 10.0}}
    config = replace(base, **{name: replace(getattr(base, name), **values) for name, values in overrides.items()})
    assert (config.ingest.actors, config.ingest.linger_ms, config.server.shutdown_timeout) == (2, 2.0, 10.0)
    assert config.ingest.flush_events == base.ingest.flush_events and config.cassandra == base.cassandra
    # bench/common.py keyspace_config()
    config = replace(base, cassandra=replace(base.cassandra, keyspace="bench"))
    assert config.cassandra.keyspace == "bench" and base.cassandra.keyspace == "player_sessions"
    # tests/test_node.py
    node = replace(NodeConfig(), native_port=19042, dir="/tmp/node")
    assert (node.native_port, node.dir, node.heap) == (19042, "/tmp/node", "1g")
    assert isinstance(config, Config) and isinstance(node, NodeConfig)
    assert isinstance(replace(base.cassandra).datacenters, MappingProxyType)


def test_replace_validates_like_a_load() -> None:
    with pytest.raises(ValidationError, match="must be 0 \\(one per core\\) or more"):
        replace(IngestConfig(), actors=-1)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        replace(IngestConfig(), actor=1)  # dataclasses.replace raised TypeError here
    assert replace(CassandraConfig(), contact_points=["a"]).contact_points == ("a",)


def test_model_copy_works_but_checks_nothing() -> None:
    # The plain pydantic way; like dataclasses.replace it neither converts nor checks values.
    base = Config()
    copy = base.model_copy(update={"live": base.live.model_copy(update={"queue_size": 5})})
    assert copy.live.queue_size == 5 and base.live.queue_size == 10_000
    assert IngestConfig().model_copy(update={"actors": -1}).actors == -1
