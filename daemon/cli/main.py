"""Command line: `python -m daemon serve|schema|rollups|node|cluster|bus|gen|load`; each command module registers."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon.core.config import ConfigError, load_config
from daemon.core.errors import CommandError

SERVICE_COMMANDS = ("serve", "schema", "rollups", "keys")
TOOL_COMMANDS = ("node", "cluster", "bus", "gen", "load")
TOOLS_PACKAGE = "daemon.tools"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m daemon", description="player-session-service daemon")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: config.toml)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SERVICE_COMMANDS + TOOL_COMMANDS:
        try:
            # Command modules import aiohttp or the driver only inside their `run`, so `node` stays light.
            module = importlib.import_module(f"daemon.cli.{name}")
        except ModuleNotFoundError as exc:
            if name in TOOL_COMMANDS and (exc.name or "").startswith(TOOLS_PACKAGE):
                continue  # the service image ships without the tools
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, config))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
