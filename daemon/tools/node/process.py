"""What the node needs and how it is watched: Java and Maven, the jars, its process, its ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from daemon.core.errors import CommandError
from daemon.tools import probes
from daemon.tools.node.files import (
    LOG_TAIL,
    SUPPORTED_JAVA,
    NodePaths,
    Say,
    is_our_cmdline,
    maven_command,
    parse_java_major,
    render_pom,
)


class NodeError(CommandError):
    """A node command failed; `details` (the tail of a log) are shown above the one-line reason."""

    def __init__(self, reason: str, details: Sequence[str] = (), source: str = "") -> None:
        super().__init__(reason)
        self.details = list(details)
        self.source = source


def port_in_use(host: str, port: int, address_key: str = "node.listen_address") -> bool:
    """True when some process holds host:port; `address_key` names the host's setting in errors."""
    return probes.port_in_use(host, port, address_key)


def cql_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def reap(pid: int) -> int | None:
    """Exit code of `pid` if it is our child and has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done == pid else None


def alive(pid: int) -> bool:
    return reap(pid) is None and probes.running(pid)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def running_pid(paths: NodePaths) -> int | None:
    """Our JVM: the pid file's process if it is ours, else any CassandraDaemon using our data dir.

    Matching the command line (not just the pid) guards against pid reuse and a lost pid file.
    """

    def candidates() -> Iterator[int]:
        with contextlib.suppress(OSError, ValueError):
            yield int(paths.pid_file.read_text().strip())
        yield from (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())

    return next((pid for pid in candidates() if is_our_cmdline(cmdline(pid), paths) and alive(pid)), None)


def find_java(version: str) -> str:
    """Path of a Java 11/17 runtime (JAVA_HOME first, then PATH); one-line CommandError otherwise."""
    java_home = os.environ.get("JAVA_HOME", "")
    home_java = Path(java_home, "bin", "java")
    java = str(home_java) if java_home and home_java.is_file() else shutil.which("java")
    if java is None:
        raise CommandError("java not found: install OpenJDK 17")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"java at {java} does not run ({exc}): install OpenJDK 17") from None
    major = parse_java_major(result.stderr + result.stdout)
    if major not in SUPPORTED_JAVA:
        raise CommandError(
            f"java at {java} is version {major or 'unknown'}; Cassandra {version} needs Java 11 or 17: "
            "install OpenJDK 17 (or point JAVA_HOME at it)"
        )
    return java


def ensure_jars(paths: NodePaths, say: Say) -> None:
    """Fetch cassandra-all and its runtime dependencies once; ~/.m2 makes later fetches offline-fast."""
    if paths.lib_marker.exists():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise CommandError(f"mvn not found: install Maven (needed once to fetch the Cassandra {paths.version} jars)")
    paths.maven.mkdir(parents=True, exist_ok=True)
    pom = paths.maven / "pom.xml"
    pom.write_text(render_pom(paths.version), encoding="utf-8")
    # Fetch next to the final dir and rename: an interrupted fetch never looks complete.
    partial = paths.root / f"lib-{paths.version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    say(f"fetching Cassandra {paths.version} jars with Maven (first start only)...")
    started = time.monotonic()
    result = subprocess.run(maven_command(mvn, pom, partial), capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(partial.glob("cassandra-all-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()
        raise NodeError(
            f"Maven could not fetch cassandra-all {paths.version} (exit code {result.returncode})",
            output[-LOG_TAIL:],
            "mvn output",
        )
    (partial / ".complete").write_text(f"cassandra-all {paths.version}\n", encoding="utf-8")
    shutil.rmtree(paths.lib, ignore_errors=True)
    partial.rename(paths.lib)
    jars = list(paths.lib.glob("*.jar"))
    size = sum(jar.stat().st_size for jar in jars) / 1e6
    say(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.1f}s")


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL; True when SIGKILL was needed."""
    return bool(terminate_all([pid], timeout))


def terminate_all(pids: Sequence[int], timeout: float) -> list[int]:
    """SIGTERM every pid at once, wait up to `timeout`, then SIGKILL the survivors; returns the pids SIGKILLed."""
    survivors = signal_and_wait(pids, signal.SIGTERM, timeout)
    if survivors and signal_and_wait(survivors, signal.SIGKILL, 10.0):
        raise CommandError(f"Cassandra (pid {', '.join(map(str, survivors))}) survived SIGKILL")
    return survivors


def signal_and_wait(pids: Sequence[int], sig: signal.Signals, wait: float) -> list[int]:
    """Send `sig` to every pid, then wait up to `wait` seconds for them to exit; returns those still alive."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + wait
    remaining = [pid for pid in pids if alive(pid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)  # Another process's exit cannot be awaited: poll it.
        remaining = [pid for pid in remaining if alive(pid)]
    return remaining
