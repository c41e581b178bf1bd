"""Session events: the validated in-memory form and the rules that turn a JSON object into one."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from daemon.core.instants import datetime_to_ms, parse_iso

MAX_PLAYER_ID_LENGTH = 128
PLAYER_ID_TOO_LONG = f"player_id: longer than {MAX_PLAYER_ID_LENGTH} characters"
COUNTRY_CODE = "two uppercase letters (ISO 3166-1 alpha-2)"
COUNTRY_REQUIRED_FORM = f"country: must be {COUNTRY_CODE}"

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

EventKind = Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event. `ts_ms` is epoch milliseconds (Cassandra's timestamp precision)."""

    kind: EventKind
    player_id: str
    session_id: uuid.UUID
    ts_ms: int
    country: str | None  # set on starts only: `country is None` is how callers tell an end


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
        raise InvalidEvent(PLAYER_ID_TOO_LONG)
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
    try:
        return datetime_to_ms(parse_iso(value))
    except ValueError:
        raise InvalidEvent("ts: not an ISO-8601 timestamp") from None


def _country(value: Any) -> str:
    if value is None:
        raise InvalidEvent("country: required on start events")
    if not isinstance(value, str) or not is_country_code(value):
        raise InvalidEvent(COUNTRY_REQUIRED_FORM)
    return value


def is_country_code(text: str) -> bool:
    """The one country rule of events, query paths and live subscriptions alike."""
    return _COUNTRY.fullmatch(text) is not None
