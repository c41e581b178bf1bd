"""What every command module shares: the subparser helper and the status formatting."""

from __future__ import annotations

import argparse
from typing import Any

# argparse's subparsers action is private (_SubParsersAction); typed loosely on purpose.
Subparsers = Any


def add_command(subparsers: Subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add one subcommand parser; the caller sets `run=` with `set_defaults`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser


def format_rss(rss_bytes: int | None) -> str:
    """A process's resident memory as the status commands print it."""
    return f"{rss_bytes / 2**20:.0f} MB" if rss_bytes is not None else "unknown"
