"""Request bodies to events: decode JSON or JSON Lines, validate each event, apply retention rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from daemon.core.config import IngestConfig
from daemon.core.events import Event, InvalidEvent, parse_event
from daemon.core.instants import MS_PER_HOUR

JSON = "application/json"
NDJSON = "application/x-ndjson"
CONTENT_TYPES = (JSON, NDJSON)


class BodyError(Exception):
    """The whole body is unusable; nothing of it is stored. `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Intake:
    """The outcome of one request body: what to store and what to tell the client."""

    received: int = 0
    accepted: list[Event] = field(default_factory=list)
    discarded: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": len(self.accepted),
            "discarded": self.discarded,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class Rules:
    """The limits and the clock reading one request is judged by."""

    now_ms: int
    retention_ms: int
    max_future_hours: float
    max_events: int

    @classmethod
    def of(cls, config: IngestConfig, now_ms: int, max_events: int | None = None) -> Rules:
        """The configured rules at `now_ms`; `max_events` defaults to `ingest.max_batch_events`."""
        return cls(now_ms, config.retention_ms, config.max_future_hours, max_events or config.max_batch_events)

    @property
    def oldest_ms(self) -> int:
        """Events before this are older than the retention span: discarded, not stored."""
        return self.now_ms - self.retention_ms

    @property
    def newest_ms(self) -> int:
        return self.now_ms + int(self.max_future_hours * MS_PER_HOUR)


def read_body(body: bytes, content_type: str, rules: Rules) -> Intake:
    """Decode and judge a body; raises BodyError when nothing of it can be used."""
    if content_type == JSON:
        items = _decode_array(body)
    elif content_type == NDJSON:
        items = _decode_lines(body)
    else:
        raise BodyError(415, f"content type must be {JSON} or {NDJSON}, not {content_type or 'missing'}")
    if not items:
        raise BodyError(400, "body: no events")
    if len(items) > rules.max_events:
        raise BodyError(413, f"body: {len(items)} events, more than the limit of {rules.max_events}")
    return _judge(items, rules)


def _decode_array(body: bytes) -> list[tuple[int, Any]]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise BodyError(400, "body: must be a JSON array of event objects")
    return list(enumerate(value))  # an element that is not an object is rejected by index, like any bad event


# Sentinel for a JSON Lines line that is not valid JSON: rejected alone, the rest still stored.
_UNPARSABLE = object()


def _decode_lines(body: bytes) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for number, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        try:
            items.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError:
            items.append((number, _UNPARSABLE))
    return items


def _judge(items: list[tuple[int, Any]], rules: Rules) -> Intake:
    intake = Intake(received=len(items))
    oldest, newest = rules.oldest_ms, rules.newest_ms
    for index, item in items:
        if item is _UNPARSABLE:
            intake.rejected.append({"index": index, "error": "line: not valid JSON"})
            continue
        try:
            event = parse_event(item)
        except InvalidEvent as exc:
            intake.rejected.append({"index": index, "error": str(exc)})
            continue
        if event.ts_ms < oldest:
            intake.discarded += 1
        elif event.ts_ms > newest:
            intake.rejected.append(
                {"index": index, "error": f"ts: more than {rules.max_future_hours:g} hours after the service's now"}
            )
        else:
            intake.accepted.append(event)
    return intake
