"""`python -m daemon cluster start|status|stop|kill|stop-node|start-node|logs`: a local multi-node Cassandra."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import ValidationError

from daemon.cli.commands import Subparsers, add_command, format_rss
from daemon.cli.node import print_details
from daemon.core.config import Config, replace
from daemon.core.errors import CommandError
from daemon.tools.node.cluster import (
    cluster_status,
    kill_member,
    start_cluster,
    start_member,
    stop_cluster,
    stop_member,
)
from daemon.tools.node.files import tail_lines
from daemon.tools.node.layout import layout_for
from daemon.tools.node.manager import NOT_RUNNING
from daemon.tools.node.process import NodeError


def _run_start(args: argparse.Namespace, config: Config) -> int:
    cluster = config.cluster
    if args.nodes is not None:
        try:
            cluster = replace(cluster, nodes=args.nodes)
        except ValidationError as exc:
            raise CommandError(f"--nodes: {exc.errors()[0]['ctx']['error']}") from None
    try:
        info = start_cluster(cluster, config.node)
    except NodeError as exc:
        print_details(exc)
        raise
    where = f"CQL {', '.join(info.layout.contact_points)} port {cluster.native_port}"
    if info.started:
        print(f"cluster ready in {info.seconds:.1f}s ({where})")
    else:
        print(f"already running: {len(info.layout.members)} nodes ({where})")
    return 0


def _run_start_node(args: argparse.Namespace, config: Config) -> int:
    try:
        seconds = start_member(config.cluster, config.node, args.node)
    except NodeError as exc:
        print_details(exc)
        raise
    print(f"node{args.node} ready in {seconds:.1f}s")
    return 0


def _run_stop(args: argparse.Namespace, config: Config) -> int:
    stop_cluster(config.cluster, config.node)
    return 0


def _run_status(args: argparse.Namespace, config: Config) -> int:
    statuses = cluster_status(config.cluster, config.node)
    names = {status.member.address: status.member.name for status in statuses}
    for status in statuses:
        member = status.member
        where = f"{member.name}  {member.address}:{member.node.native_port}"
        if status.pid is None:
            taken = f"; port {status.foreign_port} is in use by another process" if status.foreign_port else ""
            print(f"{where}  down{taken}")
            continue
        rss = format_rss(status.rss_bytes)
        state = "up" if status.cql_ready else "starting"
        peers = ", ".join(
            f"{names.get(address, address)} {'UP' if up else 'DOWN'}" for address, up in sorted(status.peers.items())
        )
        print(f"{where}  {state}  pid {status.pid}  RSS {rss}  sees: {peers or 'no peer yet'}")
    return 0 if all(status.cql_ready for status in statuses) else NOT_RUNNING


def _run_member(action: Callable[..., bool]) -> Callable[[argparse.Namespace, Config], int]:
    def run(args: argparse.Namespace, config: Config) -> int:
        action(config.cluster, config.node, args.node)
        return 0

    return run


def _run_logs(args: argparse.Namespace, config: Config) -> int:
    log = layout_for(config.cluster, config.node).member(args.node).paths.system_log
    if not log.exists():
        raise CommandError(f"no log at {log} yet; start the cluster with `python -m daemon cluster start`")
    print("\n".join(tail_lines(log, args.lines)))
    return 0


def _node_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("node", type=int, metavar="N", help="node number (node N listens on 127.0.0.N)")
    return parser


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "cluster", "manage a local multi-node Cassandra ([cluster] in config.toml)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = add_command(actions, "start", "start every node together (reuse running ones); wait until all see all UP")
    start.add_argument("--nodes", type=int, default=None, help="number of nodes (default: cluster.nodes)")
    start.set_defaults(run=_run_start)
    status = add_command(actions, "status", "per node: address, pid, up/down, RSS, its view of the others")
    status.set_defaults(run=_run_status)
    add_command(actions, "stop", "stop every node (SIGTERM, then SIGKILL after 60 s)").set_defaults(run=_run_stop)
    commands = (
        ("kill", "SIGKILL node N, as a crash would", _run_member(kill_member)),
        ("stop-node", "stop node N (SIGTERM: its peers see it DOWN at once)", _run_member(stop_member)),
        ("start-node", "(re)start node N; wait until it serves CQL and it and its peers see each other UP",
         _run_start_node),
    )
    for name, help_text, run in commands:
        _node_argument(add_command(actions, name, help_text)).set_defaults(run=run)
    logs = _node_argument(add_command(actions, "logs", "print the end of node N's system.log"))
    logs.add_argument("-n", "--lines", type=int, default=50, help="number of lines (default: 50)")
    logs.set_defaults(run=_run_logs)
