"""The Redis stream of stored starts: entry ids, what an entry holds, and where a reader resumes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from daemon.core.events import Event

FIELD = b"s"
"""An entry's one field: the starts of one flush, `[[player_id, session_id, ts_ms, country], ...]`."""


class StreamId(NamedTuple):
    """An entry id, `<ms>-<seq>`; ordered like Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: bytes | str) -> StreamId:
        raw = text.decode() if isinstance(text, bytes) else text
        ms, _, seq = raw.partition("-")
        return cls(int(ms), int(seq or 0))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ORIGIN = StreamId(0, 0)
"""Before every entry: XREAD from here returns the whole stream."""


def resume_point(last_seen: StreamId | None, tail: StreamId | None) -> StreamId:
    """Where a reader's XREAD starts after it (re)connected, given the stream's newest id then.

    First connection (`last_seen` None): after the newest entry, so a new replica starts with what
    is stored from now on rather than replaying history. Reconnection: after the last entry read,
    so nothing still in the stream is missed. But a stream that is gone or younger than what was
    read (Redis restarted without persistence, or the key was deleted) holds only entries this
    reader never saw: all of it, from the origin (ids in the new stream need not exceed old ones).
    """
    if last_seen is None:
        return tail or ORIGIN
    if tail is None or tail < last_seen:
        return ORIGIN
    return last_seen


def encode_starts(starts: Sequence[Event]) -> bytes:
    # orjson writes a UUID as its canonical string.
    return orjson.dumps([[start.player_id, start.session_id, start.ts_ms, start.country] for start in starts])


def decode_starts(payload: bytes) -> list[Event]:
    """An entry's starts; ValueError when it is not an entry of ours."""
    rows = orjson.loads(payload)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(rows, list):
        raise ValueError("not an entry of starts: expected a list")
    try:
        return [
            Event("start", player, uuid.UUID(session), int(ts_ms), country) for player, session, ts_ms, country in rows
        ]
    except (TypeError, AttributeError) as exc:  # a row that is not four values, or a session id that is not text
        raise ValueError(f"not an entry of starts: {exc}") from None
