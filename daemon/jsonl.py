"""Open a JSON Lines file whether plain, gzip or bzip2, judged by its name."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path
from typing import BinaryIO


def open_jsonl(path: Path) -> BinaryIO:
    """A binary stream of the decompressed lines; `.gz` and `.bz2` are inflated as they are read."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
