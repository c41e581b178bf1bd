"""The compatibility route's server-side JSON Lines file: numbered line ranges and their shared position."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import BinaryIO

from cql.compat import LineCursor
from daemon.core.jsonl import open_jsonl


class RawFile:
    """Keeps one reader open at its last position, since claims usually continue where it stopped."""

    __slots__ = ("path", "_stream", "_position", "_lock")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: BinaryIO | None = None
        self._position = 0
        self._lock = threading.Lock()

    def read(self, first_line: int, count: int) -> list[bytes]:
        """Lines [first_line, first_line + count) (fewer at the end of the file). Blocking: run in a thread."""
        with self._lock:
            if self._stream is None or first_line < self._position:
                self.close()
                self._stream = open_jsonl(self.path)
                self._position = 0
            skipped = sum(1 for _ in itertools.islice(self._stream, first_line - self._position))
            self._position += skipped
            lines = list(itertools.islice(self._stream, count))
            self._position += len(lines)
            return lines

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class CompatFeed:
    """GET /add/<n>'s configured file and the position in it that every replica shares."""

    __slots__ = ("raw_file", "cursor", "lock")

    def __init__(self, raw_file: RawFile, cursor: LineCursor) -> None:
        self.raw_file = raw_file
        self.cursor = cursor
        self.lock = asyncio.Lock()  # one request at a time per process keeps the reader sequential
