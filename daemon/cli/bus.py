"""`python -m daemon bus start|stop|status`: the local redis-server behind live.bus (the bus tool's command)."""

from __future__ import annotations

import argparse

from daemon.cli.commands import Subparsers, add_command, format_rss
from daemon.core.config import Config
from daemon.tools.bus.server import NOT_RUNNING, bus_status, bus_url, start_bus, stop_bus


def _run_start(args: argparse.Namespace, config: Config) -> int:
    info = start_bus(config.bus)
    if info.reused:
        print(f"already running (pid {info.pid}, {bus_url(config.bus)})")
    if config.live.bus != bus_url(config.bus):
        print(f"to use it: set live.bus = \"{bus_url(config.bus)}\" (or PSS_LIVE_BUS={bus_url(config.bus)})")
    return 0


def _run_stop(args: argparse.Namespace, config: Config) -> int:
    stop_bus(config.bus, kill=args.kill)
    return 0


def _run_status(args: argparse.Namespace, config: Config) -> int:
    bus = config.bus
    status = bus_status(bus)
    where = f"{bus.host}:{bus.port}"
    if not status.running:
        taken = f"; port {bus.port} is in use by another process" if status.foreign_port else ""
        print(f"not running ({where}){taken}")
        return NOT_RUNNING
    rss = format_rss(status.rss_bytes)
    state = "running" if status.answering else "running, not answering PING"
    print(f"{state}: pid {status.pid}, RSS {rss}, {bus_url(bus)}, dir {bus.dir}")
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "bus", "manage the local redis-server for live.bus ([bus] in config.toml)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = add_command(actions, "start", "start redis-server (reuse it if already running); wait until it answers")
    start.set_defaults(run=_run_start)
    stop = add_command(actions, "stop", "stop it (SIGTERM, then SIGKILL after 10 s)")
    stop.add_argument("--kill", action="store_true", help="SIGKILL at once, as in a crash (for failure tests)")
    stop.set_defaults(run=_run_stop)
    add_command(actions, "status", "show pid, memory and port; exit 3 when not running").set_defaults(run=_run_status)
