"""Probes every tool that runs a local server uses: is a port taken, how much memory does a process hold."""

from __future__ import annotations

import contextlib
import errno
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
