"""The loader's input and output: batches streamed from a (compressed) file, the progress line, the summary."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from daemon.core.jsonl import compression_of

SAMPLE_REJECTIONS = 5


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive non-blank lines of the input, ready to POST."""

    seq: int
    lines: list[bytes]
    line_numbers: array[int]  # 1-based file line of each entry in `lines` (blank lines are skipped)
    body: bytes  # the lines joined with "\n", gzip-compressed when asked
    input_bytes: int  # bytes of the file (compressed, if it is) consumed while reading this batch


class LineSource:
    """Reads a JSON Lines file (plain, gzip or bzip2, sniffed from its first bytes) or stdin in batches.

    Blocking: the loader calls `read_batch` from one worker thread, one call at a time.
    """

    __slots__ = ("name", "total_bytes", "_raw", "_lines", "_owns_raw", "_line_number", "_seq", "_position")

    def __init__(self, raw: BinaryIO, name: str, total_bytes: int | None, owns_raw: bool) -> None:
        self.name = name
        self.total_bytes = total_bytes  # None when unknown (a pipe): no percentage, no ETA
        # peek() sniffs the format without consuming bytes, even from a pipe.
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
        self._raw: BinaryIO = buffered
        compression = compression_of(buffered.peek(3)[:3])
        self._lines: BinaryIO
        if compression == "gzip":
            self._lines = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        elif compression == "bzip2":
            self._lines = bz2.BZ2File(buffered, "rb")  # type: ignore[assignment]
        else:
            self._lines = buffered
        self._owns_raw = owns_raw
        self._line_number = 0
        self._seq = 0
        self._position = 0

    @classmethod
    def open(cls, path: str) -> LineSource:
        """`-` is stdin; anything else a file path. Raises OSError when the file cannot be read."""
        if path == "-":
            return cls(sys.stdin.buffer, "stdin", None, owns_raw=False)
        raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            size = os.fstat(raw.fileno()).st_size
            return cls(raw, path, size if size > 0 else None, owns_raw=True)
        except BaseException:
            raw.close()
            raise

    def read_batch(self, size: int, compress: bool) -> Batch | None:
        """The next `size` non-blank lines (fewer at the end), or None when the input is exhausted."""
        lines: list[bytes] = []
        numbers = array("Q")
        readline = self._lines.readline
        number = self._line_number
        while len(lines) < size:
            line = readline()
            if not line:
                break
            number += 1
            if line.strip():
                lines.append(line.rstrip(b"\r\n"))
                numbers.append(number)
        self._line_number = number
        if not lines:
            return None
        body = b"\n".join(lines)
        if compress:
            # Level 1: most of what gzip saves on JSON comes cheap; higher levels cost CPU, not bytes.
            body = gzip.compress(body, compresslevel=1)
        position = self._tell()
        batch = Batch(self._seq, lines, numbers, body, max(0, position - self._position))
        self._seq += 1
        self._position = position
        return batch

    def _tell(self) -> int:
        if self.total_bytes is None:
            return 0
        try:
            return self._raw.tell()
        except OSError:
            return 0

    def close(self) -> None:
        if self._lines is not self._raw:
            self._lines.close()
        if self._owns_raw:
            self._raw.close()


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """One self-rewriting status line: events sent, events/s and, when the input size is known, % and ETA.

    Redraws at most every `interval` seconds so a fast loader does not spend its time on the terminal.
    """

    __slots__ = ("_stream", "_total", "_clock", "_interval", "_started", "_drawn_at", "_events", "_bytes", "_width")

    def __init__(
        self,
        stream: TextIO,
        total_bytes: int | None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self._stream = stream
        self._total = total_bytes
        self._clock = clock
        self._interval = interval
        self._started = clock()
        self._drawn_at = float("-inf")
        self._events = 0
        self._bytes = 0
        self._width = 0

    @staticmethod
    def wanted(enabled: bool, stream: TextIO) -> bool:
        """Only on a terminal: a log file full of carriage returns helps nobody."""
        return enabled and stream.isatty()

    def advance(self, events: int, input_bytes: int) -> None:
        self._events += events
        self._bytes += input_bytes
        now = self._clock()
        if now - self._drawn_at >= self._interval:
            self._drawn_at = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line, so what follows starts on a fresh one."""
        if self._events or self._width:
            self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()

    def render(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        text = f"{self._events:,} events sent  {self._events / elapsed:,.0f} events/s"
        if self._total:
            fraction = min(self._bytes / self._total, 1.0)
            text += f"  {fraction:6.1%}"
            if 0 < fraction < 1:
                text += f"  ETA {_format_duration(elapsed * (1 - fraction) / fraction)}"
        return text + f"  elapsed {_format_duration(elapsed)}"

    def _draw(self, now: float) -> None:
        text = self.render(now)
        # Pad over the previous, possibly longer line instead of relying on terminal escapes.
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._stream.write(f"\r{text}{padding}")
        self._stream.flush()


# -- the summary ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    error: str


@dataclass(frozen=True, slots=True)
class Failure:
    first_line: int
    last_line: int
    reason: str


@dataclass(slots=True)
class LoadSummary:
    """What happened; the server's counts are summed over the batches it answered."""

    events_sent: int = 0  # in batches the server answered (accepted, discarded or rejected)
    received: int = 0
    accepted: int = 0
    discarded: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0
    failed_batches: int = 0
    failed_events: int = 0
    unsent_events: int = 0  # read but not sent because the load stopped early
    stopped: str = ""  # why the load stopped before the end of the input, if it did
    wall_seconds: float = 0.0
    samples: list[Rejection] = field(default_factory=list)  # the rejections with the lowest line numbers
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.rejected or self.failed_batches or self.unsent_events or self.stopped)

    @property
    def events_per_second(self) -> float:
        return self.events_sent / self.wall_seconds if self.wall_seconds > 0 else 0.0


def describe(summary: LoadSummary, name: str, rejected_file: Path | None) -> str:
    """The end-of-load report, a few lines."""
    lines = [
        f"loaded {name} in {summary.wall_seconds:.1f} s: {summary.events_sent:,} events sent "
        f"({summary.events_per_second:,.0f} events/s)",
        f"  received {summary.received:,}  accepted {summary.accepted:,}  "
        f"discarded {summary.discarded:,}  rejected {summary.rejected:,}",
        f"  batches {summary.batches:,}  retries {summary.retries:,}  "
        f"failed batches {summary.failed_batches:,} ({summary.failed_events:,} events)",
    ]
    if summary.rejected:
        top = summary.reasons.most_common(3)
        lines.append("  rejections by reason: " + "; ".join(f"{reason} ({count:,})" for reason, count in top))
        lines.append("  first rejected lines:")
        lines.extend(f"    line {item.line}: {item.error}" for item in summary.samples)
        if rejected_file is not None:
            lines.append(f"  rejected lines written to {rejected_file}")
    if summary.failures:
        lines.append("  failed batches (not stored):")
        failures = sorted(summary.failures, key=lambda failure: failure.first_line)[:SAMPLE_REJECTIONS]
        lines.extend(f"    lines {item.first_line}-{item.last_line}: {item.reason}" for item in failures)
    if summary.stopped:
        lines.append(
            f"  stopped early: {summary.stopped}; {summary.unsent_events:,} more events read but not sent "
            "(re-running the whole file is safe: writes are idempotent)"
        )
    return "\n".join(lines)
