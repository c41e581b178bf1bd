"""`python -m daemon load FILE`: stream a JSON Lines file to a running server (the loader tool's command)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from daemon.cli.commands import Subparsers, add_command
from daemon.core.config import Config
from daemon.core.errors import CommandError
from daemon.tools.load.loader import LoadError, LoadOptions, load
from daemon.tools.load.source import LoadSummary, describe


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "load", "send a JSON Lines file of events to a running server")
    parser.add_argument("file", metavar="FILE", help="JSON Lines file (.jsonl, .gz, .bz2) or - for stdin")
    parser.add_argument("--url", default=None, help="server base URL (default: from [server] in the config)")
    d = LoadOptions()  # the options' own defaults, so the help and the library never disagree
    parser.add_argument(
        "--batch-size", type=_positive_int, default=d.batch_size, help="lines per request (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=d.concurrency, help="requests in flight (default: %(default)s)"
    )
    parser.add_argument(
        "--max-retries", type=_non_negative_int, default=d.max_retries, help="retries per batch (default: %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=d.timeout, help="seconds per request (default: %(default)s)")
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    parser.add_argument(
        "--rejected-file", type=Path, default=None, help="write rejected lines as JSON Lines {line, error, raw}"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    # A server bound to every interface is reached on loopback.
    host = "127.0.0.1" if config.server.host in ("", "0.0.0.0", "::") else config.server.host
    host = f"[{host}]" if ":" in host else host
    url = args.url or f"http://{host}:{config.server.port}"
    if args.file != "-" and not Path(args.file).is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 2
    options = LoadOptions(
        url=url,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        gzip=args.gzip,
        rejected_file=args.rejected_file,
        progress=not args.no_progress,
        timeout=args.timeout,
    )
    name = "stdin" if args.file == "-" else args.file
    try:
        summary = asyncio.run(load(args.file, options))
    except LoadError as exc:
        print(describe(exc.summary, name, options.rejected_file))
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the input or the --rejected-file could not be opened
        raise CommandError(f"{exc.filename or args.file}: {exc.strerror or exc}") from None
    print(describe(summary, name, options.rejected_file))
    return exit_code(summary)


def exit_code(summary: LoadSummary) -> int:
    """0 only when every line was stored or deliberately discarded; 1 otherwise."""
    return 0 if summary.ok else 1
