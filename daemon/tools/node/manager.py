"""A local single-node Cassandra run from its Maven jars: start (or reuse), stop, status."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import NodeConfig
from daemon.core.errors import CommandError
from daemon.tools.node.files import (
    LOG_TAIL,
    NodePaths,
    Say,
    java_command,
    parse_heap,
    render_cassandra_yaml,
    render_logback_xml,
    tail_lines,
)
from daemon.tools.node.process import (
    NodeError,
    alive,
    cql_answers,
    ensure_jars,
    find_java,
    port_in_use,
    reap,
    running_pid,
    terminate,
)
from daemon.tools.probes import rss_bytes

STOP_TIMEOUT = 60.0  # Cassandra drains and flushes on SIGTERM; past this it gets SIGKILL.
NOT_RUNNING = 3  # LSB status code for "program is not running".


@dataclass(frozen=True, slots=True)
class NodeInfo:
    pid: int
    reused: bool  # True when a node we started earlier was already running
    seconds: float  # launch to CQL-ready; 0 when reused


@dataclass(frozen=True, slots=True)
class NodeStatus:
    running: bool
    pid: int | None
    rss_bytes: int | None
    cql_ready: bool
    foreign_port: int | None  # a node port held by another process while ours is down


def _say(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def start_lock(lock_file: Path, say: Say, command: str = "node start") -> Iterator[None]:
    """Serialise starts (e.g. two `make` runs) so the second one finds and reuses the first's node."""
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another `{command}` is in progress; waiting for it...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def failure_tail(paths: NodePaths) -> tuple[list[str], str]:
    # JVM-level failures (bad flag, too small a heap) happen before logback exists: see stdout.log.
    for log in (paths.system_log, paths.stdout_log):
        lines = tail_lines(log, LOG_TAIL)
        if lines:
            return lines, str(log)
    return [], ""


def _wait_ready(node: NodeConfig, paths: NodePaths, pid: int, started: float, say: Say) -> None:
    """Block until the node accepts TCP on its CQL port; NodeError if it dies or the timeout passes."""
    where = f"{node.listen_address}:{node.native_port}"
    next_note = started + 10.0
    while not cql_answers(node.listen_address, node.native_port):
        code = reap(pid)
        if code is not None or not alive(pid):
            how = "" if code is None else f" (killed by signal {-code})" if code < 0 else f" with code {code}"
            raise NodeError(f"Cassandra exited during startup{how}", *failure_tail(paths))
        now = time.monotonic()
        if now - started >= node.start_timeout:
            raise NodeError(
                f"Cassandra did not accept CQL on {where} within {node.start_timeout:.0f}s (node.start_timeout)",
                *failure_tail(paths),
            )
        if now >= next_note:
            say(f"  still starting ({now - started:.0f}s)...")
            next_note += 10.0
        time.sleep(0.25)  # A sync CLI polling a port: there is nothing to await.


def start_node(node: NodeConfig, say: Say = _say) -> NodeInfo:
    """Start the node (or reuse ours if running) and return once it accepts CQL connections."""
    paths = NodePaths.of(node)
    paths.root.mkdir(parents=True, exist_ok=True)
    with start_lock(paths.lock_file, say):
        pid = running_pid(paths)
        if pid is not None:
            paths.pid_file.write_text(f"{pid}\n", encoding="utf-8")
            # An earlier start may have timed out while the JVM kept booting: wait, never start twice.
            _wait_ready(node, paths, pid, time.monotonic(), say)
            return NodeInfo(pid, reused=True, seconds=0.0)
        paths.pid_file.unlink(missing_ok=True)
        try:
            heap = parse_heap(node.heap)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        java = find_java(node.version)
        for key, port in (("native_port", node.native_port), ("storage_port", node.storage_port)):
            if port_in_use(node.listen_address, port):
                raise CommandError(
                    f"port {port} (node.{key}) on {node.listen_address} is already in use by another process; "
                    f"stop it or set PSS_NODE_{key.upper()}"
                )
        ensure_jars(paths, say)
        started = time.monotonic()
        pid = launch(java, paths, heap, render_cassandra_yaml(node))
        say(f"starting Cassandra {node.version} (pid {pid}, heap {heap}); log: {paths.system_log}")
        try:
            _wait_ready(node, paths, pid, started, say)
        except BaseException:
            terminate(pid, 10.0)  # never leave a half-started node holding the ports
            paths.pid_file.unlink(missing_ok=True)
            raise
        return NodeInfo(pid, reused=False, seconds=time.monotonic() - started)


def launch(java: str, paths: NodePaths, heap: str, cassandra_yaml: str, extra: Sequence[str] = ()) -> int:
    """Write the node's config files, start its JVM in a session of its own; returns the pid (also in the pid file)."""
    for folder in (paths.conf, paths.data, paths.logs, paths.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    (paths.conf / "cassandra.yaml").write_text(cassandra_yaml, encoding="utf-8")
    (paths.conf / "logback.xml").write_text(render_logback_xml(), encoding="utf-8")
    # One system.log per run, so a failure's tail and `node logs` never show an older run.
    if paths.system_log.exists():
        paths.system_log.replace(paths.logs / "system.log.1")
    with paths.stdout_log.open("wb") as out, warnings.catch_warnings():
        # The node must outlive this command, so the Popen object is dropped at once and the pid
        # tracked instead; dropping it would otherwise warn that its child is still running.
        warnings.simplefilter("ignore", ResourceWarning)
        pid = subprocess.Popen(
            java_command(java, paths, heap, extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            start_new_session=True,  # own session: Ctrl-C in the shell must not reach it
        ).pid
    paths.pid_file.write_text(f"{pid}\n", encoding="utf-8")
    return pid


def stop_node(node: NodeConfig, say: Say = _say) -> bool:
    """Stop our node if it runs; False when there was nothing to stop."""
    paths = NodePaths.of(node)
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        say("not running")
        return False
    say(f"stopping Cassandra (pid {pid})...")
    started = time.monotonic()
    killed = terminate(pid, STOP_TIMEOUT)
    paths.pid_file.unlink(missing_ok=True)
    say(f"stopped in {time.monotonic() - started:.1f}s" + (f" (SIGKILL after {STOP_TIMEOUT:.0f}s)" if killed else ""))
    return True


def node_status(node: NodeConfig) -> NodeStatus:
    paths = NodePaths.of(node)
    pid = running_pid(paths)
    if pid is None:
        ports = (node.native_port, node.storage_port)
        foreign = next((port for port in ports if port_in_use(node.listen_address, port)), None)
        return NodeStatus(False, None, None, False, foreign)
    return NodeStatus(True, pid, rss_bytes(pid), cql_answers(node.listen_address, node.native_port), None)
