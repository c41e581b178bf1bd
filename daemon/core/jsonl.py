"""JSON Lines input, plain or compressed: the format is sniffed from the first bytes, not the name."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path
from typing import BinaryIO, Literal

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"

Compression = Literal["gzip", "bzip2"] | None


def compression_of(head: bytes) -> Compression:
    """Which decompressor the first bytes of a stream call for, if any."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return None


def open_jsonl(path: Path) -> BinaryIO:
    """A binary stream of the decompressed lines of a file, inflated as they are read."""
    with path.open("rb") as probe:
        compression = compression_of(probe.read(3))
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "bzip2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
