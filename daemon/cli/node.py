"""`python -m daemon node start|stop|status|logs`: the local single-node Cassandra (the node tool's command)."""

from __future__ import annotations

import argparse
import sys

from daemon.cli.commands import Subparsers, add_command, format_rss
from daemon.core.config import Config
from daemon.core.errors import CommandError
from daemon.tools.node.files import NodePaths, tail_lines
from daemon.tools.node.manager import NOT_RUNNING, node_status, start_node, stop_node
from daemon.tools.node.process import NodeError


def print_details(exc: NodeError) -> None:
    """The log tail a failed start carries, above the one-line error the CLI prints."""
    if exc.details:
        print(f"--- last {len(exc.details)} lines of {exc.source} ---", file=sys.stderr)
        # Cassandra logs its whole classpath on one line; keep each line readable.
        print("\n".join(line if len(line) <= 300 else line[:300] + " ..." for line in exc.details), file=sys.stderr)


def _run_start(args: argparse.Namespace, config: Config) -> int:
    node = config.node
    try:
        info = start_node(node)
    except NodeError as exc:
        print_details(exc)
        raise
    where = f"CQL {node.listen_address}:{node.native_port}"
    if info.reused:
        print(f"already running (pid {info.pid}, {where})")
    else:
        print(f"Cassandra ready in {info.seconds:.1f}s (pid {info.pid}, {where})")
    return 0


def _run_stop(args: argparse.Namespace, config: Config) -> int:
    stop_node(config.node)
    return 0


def _run_status(args: argparse.Namespace, config: Config) -> int:
    node = config.node
    status = node_status(node)
    ports = f"CQL {node.listen_address}:{node.native_port}, storage port {node.storage_port}"
    if not status.running:
        taken = f"; port {status.foreign_port} is in use by another process" if status.foreign_port else ""
        print(f"not running ({ports}){taken}")
        return NOT_RUNNING
    rss = format_rss(status.rss_bytes)
    state = "running" if status.cql_ready else "starting (CQL not answering yet)"
    print(f"{state}: pid {status.pid}, RSS {rss}, {ports}")
    return 0


def _run_logs(args: argparse.Namespace, config: Config) -> int:
    log = NodePaths.of(config.node).system_log
    if not log.exists():
        raise CommandError(f"no node log at {log} yet; start the node with `python -m daemon node start`")
    print("\n".join(tail_lines(log, args.lines)))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "node", "manage the local single-node Cassandra ([node] in config.toml)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_command(actions, "start", "start the node (reuse it if already running); wait for CQL").set_defaults(
        run=_run_start
    )
    add_command(actions, "stop", "stop the node (SIGTERM, then SIGKILL after 60 s)").set_defaults(run=_run_stop)
    add_command(actions, "status", "show pid, memory and ports; exit 3 when not running").set_defaults(run=_run_status)
    logs = add_command(actions, "logs", "print the end of the node's system.log")
    logs.add_argument("-n", "--lines", type=int, default=50, help="number of lines (default: 50)")
    logs.set_defaults(run=_run_logs)

