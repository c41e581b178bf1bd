"""Instants and their units: epoch milliseconds (Cassandra's precision), ISO-8601 text, aware UTC datetimes."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso(text: str) -> dt.datetime:
    """ISO-8601 with or without fraction and zone (a trailing Z included); naive when the text has no zone.

    Raises ValueError with a message that quotes the text.
    """
    cleaned = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None


def parse_instant(text: str) -> dt.datetime:
    """Parse ISO-8601 text, surrounding blanks allowed (no zone means UTC); return an aware UTC datetime."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("empty timestamp")
    value = parse_iso(cleaned)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_instant(value: dt.datetime) -> str:
    """ISO-8601 UTC with a trailing Z; fractional seconds only when present."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


def ms_to_datetime(ts_ms: int) -> dt.datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(milliseconds=ts_ms)


def datetime_to_ms(value: dt.datetime) -> int:
    """A datetime (naive means UTC, as the driver returns them) to epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MS_PER_SECOND + delta.microseconds // 1_000


def format_ms(ts_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with a trailing Z (the API's timestamps)."""
    return format_instant(ms_to_datetime(ts_ms))
