"""The service's notion of "now": real UTC, or an instant frozen by `clock.now` for demos and tests."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC


def parse_instant(text: str) -> dt.datetime:
    """Parse ISO-8601 with or without fraction and zone (no zone means UTC); return an aware UTC datetime."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("empty timestamp")
    if cleaned[-1] in "zZ":
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_instant(value: dt.datetime) -> str:
    """ISO-8601 UTC with a trailing Z; fractional seconds only when present."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


class Clock:
    """Returns "now" as an aware UTC datetime; frozen when constructed with an instant."""

    __slots__ = ("_frozen",)

    def __init__(self, frozen: dt.datetime | None = None) -> None:
        self._frozen = frozen

    @classmethod
    def from_setting(cls, setting: str) -> Clock:
        return cls(parse_instant(setting) if setting else None)

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def now(self) -> dt.datetime:
        return self._frozen if self._frozen is not None else dt.datetime.now(UTC)
