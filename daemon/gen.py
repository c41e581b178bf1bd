"""`python -m daemon gen`: write a synthetic data set shaped like the reference file as JSON Lines."""

from __future__ import annotations

import argparse
import bz2
import contextlib
import datetime as dt
import gzip
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from daemon import commands
from daemon.config import Config
from daemon.gen_model import GenOptions, GenSummary, build_dataset  # stdlib only: cheap to import

_DEFAULTS = GenOptions()

_CHUNK_LINES = 10_000
_PENDING_CHUNKS = 3


def register(subparsers: commands.Subparsers) -> None:
    parser = commands.add_command(subparsers, "gen", "generate synthetic session events (JSON Lines)")
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
    from daemon.clock import parse_instant

    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
        # "Old" and "future" are relative to the server's clock; with a real clock, to --end.
        now = parse_instant(config.clock.now) if config.clock.now else end
    except ValueError as exc:
        raise commands.CommandError(str(exc)) from None
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
        raise commands.CommandError(str(exc)) from None
    began = time.perf_counter()
    dataset = build_dataset(options)
    try:
        write_lines(dataset.lines(), args.output)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; silence the flush at exit and report it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        raise commands.CommandError(f"{args.output}: {exc.strerror or exc}") from None
    print(describe(dataset.summary, args.output, time.perf_counter() - began), file=sys.stderr)
    return 0


def write_lines(lines: Iterable[str], output: Path | None) -> None:
    """Write lines to `output` (compressed by suffix, via a .part file renamed at the end) or stdout."""
    if output is None:
        _write_chunks(sys.stdout.buffer, lines)
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(output.name + ".part")
    try:
        with _open_output(partial, output.suffix.lower()) as stream:
            _write_chunks(stream, lines)
        os.replace(partial, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


@contextlib.contextmanager
def _open_output(path: Path, suffix: str) -> Iterator[BinaryIO]:
    with open(path, "wb", buffering=1 << 20) as raw:
        if suffix == ".gz":
            # mtime=0 and no name in the header keep the bytes identical for a seed.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as stream:
                yield stream  # type: ignore[misc]
        elif suffix == ".bz2":
            with bz2.BZ2File(raw, "wb") as stream:
                yield stream  # type: ignore[misc]
        else:
            yield raw


def _write_chunks(stream: BinaryIO, lines: Iterable[str]) -> None:
    """Render 10k-line chunks here while one worker thread compresses and writes the previous ones.

    bz2 and zlib release the GIL while compressing, so rendering and compressing overlap; at most
    a few chunks wait, and a write error surfaces at the next chunk.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gen-writer") as writer:
        pending: deque[Future[int]] = deque()
        for chunk in _chunks(lines):
            pending.append(writer.submit(stream.write, chunk))
            if len(pending) > _PENDING_CHUNKS:
                pending.popleft().result()
        for future in pending:
            future.result()


def _chunks(lines: Iterable[str]) -> Iterator[bytes]:
    iterator = iter(lines)
    while chunk := list(itertools.islice(iterator, _CHUNK_LINES)):
        chunk.append("")  # a newline after the last line too
        yield "\n".join(chunk).encode()


def describe(summary: GenSummary, output: Path | None, seconds: float) -> str:
    """One paragraph for stderr: what was generated, where, how fast."""
    text = (
        f"generated {summary.events:,} lines in {seconds:.1f} s to {output or 'stdout'}: "
        f"{summary.starts:,} starts, {summary.ends:,} ends; {summary.sessions:,} sessions "
        f"({summary.complete:,} complete, {summary.start_only:,} start-only, {summary.end_only:,} end-only) "
        f"of {summary.players:,} players in {summary.countries:,} countries, {summary.first_ts} .. {summary.last_ts}"
    )
    extras = [
        f"{count:,} {name}"
        for name, count in (
            ("duplicates", summary.duplicates),
            ("old", summary.old),
            ("future", summary.future),
            ("malformed", summary.malformed),
        )
        if count
    ]
    return text + (f"; plus {', '.join(extras)}" if extras else "")
