"""Writes generated lines to a file (gzip/bz2 by suffix, compressed in a worker thread) or stdout."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import itertools
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from daemon.tools.gen.model import GenSummary

_CHUNK_LINES = 10_000
_PENDING_CHUNKS = 3


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
