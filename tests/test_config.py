"""Unit tests of configuration loading, environment overrides and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.core.clock import Clock
from daemon.core.config import ConfigError, load_config
from daemon.core.instants import format_instant, parse_instant

ROOT = Path(__file__).resolve().parent.parent


def test_the_checked_in_config_loads_with_the_demo_clock() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert config.clock.now == "2016-12-01T00:00:00Z"
    assert config.cassandra.replication_class == "SimpleStrategy"


def test_environment_overrides_every_kind_of_value() -> None:
    config = load_config(
        ROOT / "config.toml",
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


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[server]\nport = 'x'\n", {}, "server.port: expected an integer, got 'x'"),
        ("[server]\nprot = 1\n", {}, "server.prot: unknown key"),
        ("", {"PSS_INGEST_ACTORS": "-1"}, "ingest.actors: must be 0 (one per core) or more"),
        ("[clock]\nnow = 'soon'\n", {}, "clock.now: not an ISO-8601 timestamp: 'soon'"),
        ("[cassandra]\nreplication_class = 'NetworkTopologyStrategy'\n", {}, "cassandra.datacenters: must list"),
        ("[cassandra\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, environ: dict[str, str], message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ=environ)
    assert message in str(error.value)


def test_cli_prints_one_line_for_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 70000\n")
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(bad), "schema", "show"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: server.port: must be 1..65535"


def test_clock_frozen_and_real() -> None:
    frozen = Clock.from_setting("2016-12-01T00:00:00Z")
    assert frozen.frozen and format_instant(frozen.now()) == "2016-12-01T00:00:00Z"
    assert not Clock.from_setting("").frozen
    assert format_instant(parse_instant("2016-11-22T22:40:50.5+02:00")) == "2016-11-22T20:40:50.500000Z"
