"""Command line: `python -m daemon serve|node|schema|gen|load`; each command module registers itself."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import commands
from daemon.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m daemon", description="player-session-service daemon")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: config.toml)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Command modules import aiohttp or the driver only inside their `run`, so `node` stays light.
    from daemon import gen, loader, node, rollups_cmd, schema_cmd, serve

    for module in (serve, node, schema_cmd, rollups_cmd, gen, loader):
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
    except commands.CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
