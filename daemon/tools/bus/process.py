"""How the bus's redis-server is found and watched: the binary, its process, its port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from daemon.core.errors import CommandError
from daemon.tools import probes

PROCESS_NAME = "redis-server"


def find_redis_server() -> str:
    found = shutil.which(PROCESS_NAME) or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None)
    if found is None:
        raise CommandError("redis-server not found: install Debian's package (apt-get install -y redis-server)")
    return found


def port_in_use(host: str, port: int) -> bool:
    """True when some process holds host:port (bus.host names the address in errors)."""
    return probes.port_in_use(host, port, "bus.host")


def answers_ping(host: str, port: int) -> bool:
    """The server takes commands: PING gets +PONG (not -LOADING or a refused connection)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64).startswith(b"+PONG")
    return False


def alive(pid: int) -> bool:
    return probes.running(pid)


def is_ours(pid: int, root: Path) -> bool:
    """A live redis-server working in `root`: the server changes into its `dir`, so this survives a lost pid file."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return name == PROCESS_NAME and cwd == root and alive(pid)


def running_pid(pid_file: Path, root: Path) -> int | None:
    """Our server: the pid file's process if it is ours, else any redis-server working in `root`."""
    candidates: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        candidates.append(int(pid_file.read_text().strip()))
    candidates += [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return next((pid for pid in candidates if is_ours(pid, root)), None)


def signal_and_wait(pid: int, sig: signal.Signals, timeout: float) -> bool:
    """Send `sig`; True once the process is gone, False if it still runs after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)  # A sync CLI waiting for a process to exit: there is nothing to await.
    return True
