"""`python -m daemon bus`: a local redis-server started, reused, refused on a taken port, stopped and killed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unused_port

from daemon.core.config import BusConfig
from daemon.core.errors import CommandError
from daemon.tools.bus.server import BusPaths, bus_status, bus_url, render_conf, start_bus, stop_bus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConfig]:
    """A server config of its own (dir and port); whatever a test leaves running is stopped."""
    config = BusConfig(dir=str(tmp_path / "redis"), port=unused_port(), start_timeout=10.0)
    yield config
    stop_bus(config, say=lambda line: None)


def test_the_config_persists_nothing_and_keeps_its_files_in_its_dir(bus: BusConfig) -> None:
    paths = BusPaths.of(bus)
    lines = render_conf(bus, paths).splitlines()
    assert f"port {bus.port}" in lines and "bind 127.0.0.1" in lines
    assert 'save ""' in lines and "appendonly no" in lines and "daemonize yes" in lines
    assert f'pidfile "{paths.pid_file}"' in lines and f'dir "{paths.root}"' in lines


def test_start_reuse_status_and_stop(bus: BusConfig) -> None:
    said: list[str] = []
    info = start_bus(bus, say=said.append)
    assert not info.reused and "ready" in said[-1] and bus_url(bus) in said[-1]
    assert BusPaths.of(bus).pid_file.read_text().strip() == str(info.pid)
    assert start_bus(bus, say=said.append) == type(info)(info.pid, reused=True, seconds=0.0)
    status = bus_status(bus)
    assert status.running and status.answering and status.pid == info.pid
    assert stop_bus(bus, say=said.append)
    assert "stopped" in said[-1]
    assert not bus_status(bus).running and not BusPaths.of(bus).pid_file.exists()
    assert not stop_bus(bus, say=said.append) and said[-1] == "not running"


def test_kill_is_sigkill_and_a_restart_takes_the_same_port(bus: BusConfig) -> None:
    first = start_bus(bus, say=lambda line: None)
    said: list[str] = []
    assert stop_bus(bus, say=said.append, kill=True)
    assert "(SIGKILL)" in said[-1]
    assert not BusPaths.of(bus).pid_file.exists()  # the killed server left it; stop removed it
    second = start_bus(bus, say=lambda line: None)
    assert not second.reused and second.pid != first.pid


def test_a_taken_port_is_refused_with_the_key_to_change(bus: BusConfig) -> None:
    with socket.socket() as squatter:
        squatter.bind((bus.host, bus.port))
        squatter.listen()
        taken = rf"port {bus.port} \(bus.port\) on 127.0.0.1 is already in use by another process.*PSS_BUS_PORT"
        with pytest.raises(CommandError, match=taken):
            start_bus(bus, say=lambda line: None)
        assert bus_status(bus).foreign_port


def test_the_cli_commands(bus: BusConfig) -> None:
    env = {**os.environ, "PSS_BUS_DIR": bus.dir, "PSS_BUS_PORT": str(bus.port), "PSS_LIVE_BUS": bus_url(bus)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", "bus", *args], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )

    assert run("status").returncode == 3
    started = run("start")
    assert started.returncode == 0 and "ready" in started.stdout, started
    status = run("status")
    assert status.returncode == 0 and status.stdout.startswith("running: pid"), status
    assert run("stop").returncode == 0
    assert run("status").stdout.startswith("not running")
