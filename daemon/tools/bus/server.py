"""The local redis-server for `live.bus`: start (or reuse), stop, kill, status; daemonised, nothing persisted."""

from __future__ import annotations

import contextlib
import fcntl
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import BusConfig
from daemon.core.errors import CommandError
from daemon.tools.bus.process import alive, answers_ping, find_redis_server, port_in_use, running_pid, signal_and_wait
from daemon.tools.probes import rss_bytes

STOP_TIMEOUT = 10.0  # with nothing to save, redis-server exits at once on SIGTERM; past this it gets SIGKILL
NOT_RUNNING = 3  # LSB status code for "program is not running"
LOG_TAIL = 20  # lines of its log shown when a start fails

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True, slots=True)
class BusPaths:
    """Where the server keeps its config, pid file and log; absolute (it is recognised by its working dir)."""

    root: Path

    @classmethod
    def of(cls, bus: BusConfig) -> BusPaths:
        return cls(Path(bus.dir).resolve())

    @property
    def conf(self) -> Path:
        return self.root / "redis.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "redis.pid"

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    @property
    def lock_file(self) -> Path:
        return self.root / "start.lock"


@dataclass(frozen=True, slots=True)
class BusInfo:
    pid: int
    reused: bool  # a server we started earlier was already running
    seconds: float  # launch to PONG; 0 when reused


@dataclass(frozen=True, slots=True)
class BusStatus:
    running: bool
    pid: int | None
    rss_bytes: int | None
    answering: bool
    foreign_port: bool  # the port is held by another process while ours is down


def bus_url(bus: BusConfig) -> str:
    """What `live.bus` is set to for this server."""
    return f"redis://{bus.host}:{bus.port}/0"


def render_conf(bus: BusConfig, paths: BusPaths) -> str:
    # A feed bus, not a database: no RDB snapshots, no AOF. Quoted paths may hold spaces.
    return "\n".join(
        [
            "# Written by `python -m daemon bus start` at every start; edit config.toml [bus] instead.",
            f"bind {bus.host}",
            f"port {bus.port}",
            "protected-mode yes",
            "daemonize yes",
            f'pidfile "{paths.pid_file}"',
            f'logfile "{paths.log}"',
            f'dir "{paths.root}"',
            'save ""',
            "appendonly no",
            "",
        ]
    )


@contextlib.contextmanager
def _start_lock(paths: BusPaths, say: Say) -> Iterator[None]:
    """Serialise starts, so the second of two finds and reuses the first one's server."""
    with paths.lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another `bus start` is in progress; waiting for it...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _log_tail(paths: BusPaths) -> str:
    with contextlib.suppress(OSError):
        lines = paths.log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        if lines:
            return f"; last lines of {paths.log}:\n" + "\n".join(lines)
    return ""


def start_bus(bus: BusConfig, say: Say = _say) -> BusInfo:
    """Start the server (or reuse ours if it runs) and return once it answers PING."""
    paths = BusPaths.of(bus)
    paths.root.mkdir(parents=True, exist_ok=True)
    with _start_lock(paths, say):
        pid = running_pid(paths.pid_file, paths.root)
        if pid is not None:
            _wait_ready(bus, paths, pid, time.monotonic())
            return BusInfo(pid, reused=True, seconds=0.0)
        paths.pid_file.unlink(missing_ok=True)
        server = find_redis_server()
        if port_in_use(bus.host, bus.port):
            raise CommandError(
                f"port {bus.port} (bus.port) on {bus.host} is already in use by another process; "
                "stop it or set PSS_BUS_PORT"
            )
        paths.conf.write_text(render_conf(bus, paths), encoding="utf-8")
        started = time.monotonic()
        # redis-server forks the daemon and exits; a bad config is reported by this first process.
        launched = subprocess.run(
            [server, str(paths.conf)], capture_output=True, text=True, timeout=30, check=False,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        if launched.returncode != 0:
            output = (launched.stdout + launched.stderr).strip()
            raise CommandError(f"redis-server refused to start (exit code {launched.returncode}): {output}")
        pid = _wait_for_pid_file(bus, paths, started)
        _wait_ready(bus, paths, pid, started)
        say(f"redis-server ready in {time.monotonic() - started:.2f}s (pid {pid}, {bus_url(bus)}); log: {paths.log}")
        return BusInfo(pid, reused=False, seconds=time.monotonic() - started)


def _wait_for_pid_file(bus: BusConfig, paths: BusPaths, started: float) -> int:
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(paths.pid_file.read_text().strip())
        if time.monotonic() - started >= bus.start_timeout:
            raise CommandError(f"redis-server wrote no pid file within {bus.start_timeout:.0f}s{_log_tail(paths)}")
        time.sleep(0.02)  # A sync CLI waiting for a file: there is nothing to await.


def _wait_ready(bus: BusConfig, paths: BusPaths, pid: int, started: float) -> None:
    where = f"{bus.host}:{bus.port}"
    while not answers_ping(bus.host, bus.port):
        if not alive(pid):
            paths.pid_file.unlink(missing_ok=True)
            raise CommandError(f"redis-server (pid {pid}) exited during startup{_log_tail(paths)}")
        if time.monotonic() - started >= bus.start_timeout:
            raise CommandError(
                f"redis-server did not answer PING on {where} within {bus.start_timeout:.0f}s "
                f"(bus.start_timeout){_log_tail(paths)}"
            )
        time.sleep(0.02)  # A sync CLI polling a port: there is nothing to await.


def stop_bus(bus: BusConfig, say: Say = _say, kill: bool = False) -> bool:
    """Stop our server (SIGTERM, SIGKILL after STOP_TIMEOUT; `kill`: SIGKILL at once, a crash); False if not running."""
    paths = BusPaths.of(bus)
    pid = running_pid(paths.pid_file, paths.root)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        say("not running")
        return False
    started = time.monotonic()
    how = ""
    if kill:
        how = " (SIGKILL)"
        gone = signal_and_wait(pid, signal.SIGKILL, STOP_TIMEOUT)
    else:
        gone = signal_and_wait(pid, signal.SIGTERM, STOP_TIMEOUT)
        if not gone:
            how = f" (SIGKILL after {STOP_TIMEOUT:.0f}s)"
            gone = signal_and_wait(pid, signal.SIGKILL, STOP_TIMEOUT)
    if not gone:
        raise CommandError(f"redis-server (pid {pid}) survived SIGKILL")
    paths.pid_file.unlink(missing_ok=True)  # a killed server leaves it behind
    say(f"stopped redis-server (pid {pid}) in {time.monotonic() - started:.2f}s{how}")
    return True


def bus_status(bus: BusConfig) -> BusStatus:
    paths = BusPaths.of(bus)
    pid = running_pid(paths.pid_file, paths.root)
    if pid is None:
        return BusStatus(False, None, None, False, port_in_use(bus.host, bus.port))
    return BusStatus(True, pid, rss_bytes(pid), answers_ping(bus.host, bus.port), False)
