"""`python -m daemon gen`: write a synthetic data set shaped like the reference file (the generator tool's command)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from daemon.cli.commands import Subparsers, add_command
from daemon.core.config import Config
from daemon.core.errors import CommandError
from daemon.core.instants import parse_instant
from daemon.tools.gen.model import GenOptions, build_dataset
from daemon.tools.gen.writer import describe, write_lines

_DEFAULTS = GenOptions()


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "gen", "generate synthetic session events (JSON Lines)")
    parser.add_argument("--events", type=int, default=_DEFAULTS.events, help="lines to write (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="random seed; same seed, same bytes (default: %(default)s)"
    )
    parser.add_argument(
        "--start", default=_naive(_DEFAULTS.start), help="earliest timestamp, ISO-8601 UTC (default: %(default)s)"
    )
    parser.add_argument(
        "--end", default=_naive(_DEFAULTS.end), help="end of the range, exclusive (default: %(default)s)"
    )
    parser.add_argument(
        "--output", "-o", type=Path, default=None, help="file to write; .gz/.bz2 compress (default: stdout)"
    )
    for name, what in (
        ("duplicate", "exact duplicate lines"),
        ("old", "events older than the retention period"),
        ("future", "events too far in the future"),
        ("malformed", "malformed lines (bad JSON, missing field, bad UUID, bad country)"),
    ):
        parser.add_argument(f"--{name}-rate", type=float, default=0.0, metavar="R", help=f"fraction of {what}")
    parser.set_defaults(run=run)


def _naive(value: dt.datetime) -> str:
    return value.replace(tzinfo=None).isoformat()


def run(args: argparse.Namespace, config: Config) -> int:
    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
        # "Old" and "future" are relative to the server's clock; with a real clock, to --end.
        now = parse_instant(config.clock.now) if config.clock.now else end
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    options = GenOptions(
        events=args.events,
        seed=args.seed,
        start=start,
        end=end,
        duplicate_rate=args.duplicate_rate,
        old_rate=args.old_rate,
        future_rate=args.future_rate,
        malformed_rate=args.malformed_rate,
        now=now,
        retention_days=config.ingest.retention_days,
        max_future_hours=config.ingest.max_future_hours,
    )
    try:
        options.check()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    began = time.perf_counter()
    dataset = build_dataset(options)
    try:
        write_lines(dataset.lines(), args.output)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; silence the flush at exit and report it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        raise CommandError(f"{args.output}: {exc.strerror or exc}") from None
    print(describe(dataset.summary, args.output, time.perf_counter() - began), file=sys.stderr)
    return 0

