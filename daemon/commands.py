"""Shared pieces of the CLI commands: the user-facing error and the subparser helper."""

from __future__ import annotations

import argparse
from typing import Any

# argparse's subparsers action is private (_SubParsersAction); typed loosely on purpose.
Subparsers = Any


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line, exit code 1."""


def add_command(subparsers: Subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add one subcommand parser; the caller sets `run=` with `set_defaults`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser
