"""Unit tests of event validation and body decoding (no Cassandra)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from daemon.core.events import InvalidEvent, parse_event
from daemon.core.instants import MS_PER_DAY
from daemon.core.intake import BodyError, Rules, read_body

NOW_MS = 1_480_550_400_000  # 2016-12-01T00:00:00Z
RULES = Rules(now_ms=NOW_MS, retention_ms=365 * MS_PER_DAY, max_future_hours=24, max_events=5)
SID = "4A0C43C9-C43A-42FF-BA55-67563DFA35D4"


def event(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"event": "start", "player_id": "p1", "session_id": SID, "ts": "2016-11-22T20:40:50", "country": "FI"}
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        ("2016-11-22T20:40:50", 1_479_847_250_000),
        ("2016-11-22T20:40:50Z", 1_479_847_250_000),
        ("2016-11-22T22:40:50+02:00", 1_479_847_250_000),
        ("2016-11-22T20:40:50.520022", 1_479_847_250_520),
        ("2016-11-22 20:40:50", 1_479_847_250_000),
    ],
)
def test_timestamps_in_every_accepted_shape(ts: str, expected_ms: int) -> None:
    assert parse_event(event(ts=ts)).ts_ms == expected_ms


def test_session_id_is_canonical_and_extra_fields_ignored() -> None:
    parsed = parse_event(event(extra={"x": 1}))
    assert str(parsed.session_id) == SID.lower()
    assert parsed.session_id == uuid.UUID(SID)


def test_end_ignores_country_and_namibia_is_a_country() -> None:
    assert parse_event(event(event="end", country=None)).country is None
    assert parse_event(event(country="NA")).country == "NA"


@pytest.mark.parametrize("bad", [{"event": None}, {"player_id": 5}, {"ts": 1480550400}, {"country": ""}])
def test_invalid_fields_raise(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(event(**bad))


def test_retention_boundaries() -> None:
    just_kept = "2015-12-02T00:00:00"  # exactly 365 days before now
    too_old = "2015-12-01T23:59:59"
    too_new = "2016-12-02T00:00:01"
    body = orjson.dumps([event(ts=just_kept), event(ts=too_old), event(ts=too_new), event(ts="2016-12-02T00:00:00")])
    intake = read_body(body, "application/json", RULES)
    assert (len(intake.accepted), intake.discarded) == (2, 1)
    assert [r["index"] for r in intake.rejected] == [2]


def test_limits_and_content_types() -> None:
    with pytest.raises(BodyError) as too_many:
        read_body(orjson.dumps([event()] * 6), "application/json", RULES)
    assert too_many.value.status == 413
    with pytest.raises(BodyError) as wrong_type:
        read_body(b"[]", "text/csv", RULES)
    assert wrong_type.value.status == 415
