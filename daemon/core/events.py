"""Session events: the validated in-memory form and the rules that turn a JSON object into one."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from daemon.core.clock import UTC

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
MAX_PLAYER_ID_LENGTH = 128

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

EventKind = Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event. `ts_ms` is epoch milliseconds (Cassandra's timestamp precision)."""

    kind: EventKind
    player_id: str
    session_id: uuid.UUID
    ts_ms: int
    country: str | None  # set on starts only

    @property
    def is_start(self) -> bool:
        return self.kind == "start"


class InvalidEvent(ValueError):
    """The event breaks a rule; str() is `"<field>: <reason>"`, the rejection message clients see."""


def parse_event(obj: Any) -> Event:
    """Validate one decoded JSON value; unknown extra fields are ignored."""
    if not isinstance(obj, dict):
        raise InvalidEvent("event: must be a JSON object")
    kind = obj.get("event")
    if kind != "start" and kind != "end":
        raise InvalidEvent("event: must be \"start\" or \"end\"")
    return Event(
        kind=kind,
        player_id=_player_id(obj.get("player_id")),
        session_id=_session_id(obj.get("session_id")),
        ts_ms=_timestamp_ms(obj.get("ts")),
        country=_country(obj.get("country")) if kind == "start" else None,
    )


def _player_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("player_id: must be a non-empty string")
    if len(value) > MAX_PLAYER_ID_LENGTH:
        raise InvalidEvent(f"player_id: longer than {MAX_PLAYER_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidEvent("player_id: contains control characters")
    return value


def _session_id(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise InvalidEvent("session_id: must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidEvent("session_id: not a UUID") from None


def _timestamp_ms(value: Any) -> int:
    if not isinstance(value, str):
        raise InvalidEvent("ts: must be an ISO-8601 string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent("ts: not an ISO-8601 timestamp") from None
    return datetime_to_ms(parsed)


def _country(value: Any) -> str:
    if value is None:
        raise InvalidEvent("country: required on start events")
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
        raise InvalidEvent("country: must be two uppercase letters (ISO 3166-1 alpha-2)")
    return value


def ms_to_datetime(ts_ms: int) -> dt.datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(milliseconds=ts_ms)


def datetime_to_ms(value: dt.datetime) -> int:
    """A datetime (naive means UTC, as the driver returns them) to epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MS_PER_SECOND + delta.microseconds // 1_000
