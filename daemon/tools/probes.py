"""Probes every tool that runs a local server uses: is a port taken, how much memory does a process hold."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from daemon.core.errors import CommandError


def port_in_use(host: str, port: int, address_key: str) -> bool:
    """True when some process holds host:port (bound or listening); `address_key` names the host's setting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like a server's own listening socket: a just-stopped server's TIME_WAIT connections must not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CommandError(f"{address_key} {host} is not an address of this machine") from None
            raise
    return False


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (from /proc), None when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def running(pid: int) -> bool:
    """True while any thread of `pid` has not exited (a zombie or a gone process is not running).

    Every thread counts, not only the first: after SIGKILL the group leader turns zombie at once, but
    the process's files, its listening socket among them, are closed only when its last thread exits.
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any(_thread_state(pid, thread) not in {"Z", "X"} for thread in threads)


def _thread_state(pid: int, thread: str) -> str:
    try:
        stat = Path(f"/proc/{pid}/task/{thread}/stat").read_text()
    except OSError:
        return "X"  # exited between the listing and this read
    return stat.rsplit(")", 1)[1].split()[0]  # the state letter follows the ")" ending the command name
