"""POST /v1/events against the real Cassandra node: formats, rejections, retention, idempotency, limits."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, end, new_player, post_events, session_pair, start

from cql.layout import SETTING
from daemon.core.timebuckets import partition_hour
from web.app import create_app

pytestmark = pytest.mark.cassandra


def stored_sessions(admin: Any, keyspace: str, player: str) -> dict[str, tuple[Any, Any, Any]]:
    rows = admin.execute(
        f"SELECT session_id, start_ts, end_ts, country FROM {keyspace}.sessions_by_player WHERE player_id = %s",
        (player,),
    )
    return {str(row.session_id): (row.start_ts, row.end_ts, row.country) for row in rows}


def country_rows(admin: Any, keyspace: str, country: str, hour: int, session: str) -> int:
    span = admin.execute(f"SELECT value FROM {keyspace}.storage_layout WHERE name = %s", (SETTING,)).one().value
    rows = admin.execute(
        f"SELECT session_id FROM {keyspace}.country_starts WHERE country = %s AND hour_desc = %s",
        (country, -partition_hour(hour, span)),
    )
    return sum(1 for row in rows if str(row.session_id) == session)


async def test_json_array_is_stored_and_acknowledged(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    player = new_player()
    first = session_pair(player, "2016-11-22T20:40:50", "2016-11-22T20:48:51", "FI")
    second = session_pair(player, "2016-11-23T10:00:00.520022", "2016-11-23T10:30:00Z", "EE")
    response = await post_events(client, [*first, *second])
    assert response.status == 200
    assert await response.json() == {"received": 4, "accepted": 4, "discarded": 0, "rejected": []}
    stored = stored_sessions(cassandra_admin, shared_keyspace, player)
    session_id = first[0]["session_id"]
    start_ts, end_ts, country = stored[session_id]
    assert (start_ts.isoformat(), end_ts.isoformat(), country) == ("2016-11-22T20:40:50", "2016-11-22T20:48:51", "FI")
    assert stored[second[0]["session_id"]][0].isoformat() == "2016-11-23T10:00:00.520000"


async def test_ndjson_with_blank_lines_and_a_broken_line(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    player = new_player()
    pair = session_pair(player, "2016-11-20T08:00:00", "2016-11-20T08:10:00")
    body = b"\n".join([orjson.dumps(pair[0]), b"", b"{not json", b"   ", orjson.dumps(pair[1]), b""])
    response = await client.post("/v1/events", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status == 400
    assert await response.json() == {
        "received": 3,
        "accepted": 2,
        "discarded": 0,
        "rejected": [{"index": 2, "error": "line: not valid JSON"}],
    }
    assert len(stored_sessions(cassandra_admin, shared_keyspace, player)) == 1


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
async def test_gzip_bodies(client: TestClient, cassandra_admin: Any, shared_keyspace: str, fmt: str) -> None:
    player = new_player()
    events = list(session_pair(player, "2016-11-21T08:00:00", "2016-11-21T08:10:00"))
    raw = orjson.dumps(events) if fmt == "json" else b"\n".join(orjson.dumps(e) for e in events)
    content_type = "application/json" if fmt == "json" else "application/x-ndjson"
    response = await client.post(
        "/v1/events",
        data=gzip.compress(raw),
        headers={"Content-Type": content_type, "Content-Encoding": "gzip"},
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 2
    assert len(stored_sessions(cassandra_admin, shared_keyspace, player)) == 1


async def test_every_rejection_reason_is_reported_and_valid_events_still_stored(
    client: TestClient, cassandra_admin: Any, shared_keyspace: str
) -> None:
    player = new_player()
    good = start(player, str(uuid.uuid4()), "2016-11-25T12:00:00", "SE")
    sid = str(uuid.uuid4())
    events = [
        good,
        {**good, "event": "stop"},
        {**good, "player_id": ""},
        {**good, "player_id": "x" * 129},
        {**good, "player_id": "bad\u0007id"},
        {**good, "session_id": "not-a-uuid"},
        {**good, "ts": "yesterday"},
        {k: v for k, v in good.items() if k != "country"},
        {**good, "country": "fi"},
        {**good, "country": "Code"},
        {**good, "ts": "2016-12-03T00:00:01"},
        {**good, "session_id": 12},
        end(player, sid, "2016-11-25T12:05:00") | {"country": "whatever", "extra": 1},
    ]
    response = await post_events(client, events)
    assert response.status == 400
    body = await response.json()
    assert body["received"] == 13 and body["accepted"] == 2 and body["discarded"] == 0
    assert body["rejected"] == [
        {"index": 1, "error": 'event: must be "start" or "end"'},
        {"index": 2, "error": "player_id: must be a non-empty string"},
        {"index": 3, "error": "player_id: longer than 128 characters"},
        {"index": 4, "error": "player_id: contains control characters"},
        {"index": 5, "error": "session_id: not a UUID"},
        {"index": 6, "error": "ts: not an ISO-8601 timestamp"},
        {"index": 7, "error": "country: required on start events"},
        {"index": 8, "error": "country: must be two uppercase letters (ISO 3166-1 alpha-2)"},
        {"index": 9, "error": "country: must be two uppercase letters (ISO 3166-1 alpha-2)"},
        {"index": 10, "error": "ts: more than 24 hours after the service's now"},
        {"index": 11, "error": "session_id: must be a UUID string"},
    ]
    assert set(stored_sessions(cassandra_admin, shared_keyspace, player)) == {good["session_id"], sid}


async def test_retention_discards_old_events_and_accepts_up_to_max_future(
    client: TestClient, cassandra_admin: Any, shared_keyspace: str
) -> None:
    player = new_player()
    # 365 days before the frozen now (2016 is a leap year) is 2015-12-02T00:00:00.
    old = session_pair(player, "2015-12-01T23:59:59", "2015-12-02T00:10:00")
    edge = start(player, str(uuid.uuid4()), "2016-12-01T23:59:59")  # within max_future (24 h)
    response = await post_events(client, [*old, edge])
    assert response.status == 200
    assert await response.json() == {"received": 3, "accepted": 2, "discarded": 1, "rejected": []}
    stored = stored_sessions(cassandra_admin, shared_keyspace, player)
    assert stored[old[0]["session_id"]][0] is None  # the start was discarded, the end kept
    assert stored[edge["session_id"]][0] is not None


async def test_stored_rows_carry_a_ttl_from_event_time(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    player = new_player()
    event = start(player, str(uuid.uuid4()), "2016-11-30T00:00:00")  # one day before the frozen now
    assert (await post_events(client, [event])).status == 200
    row = cassandra_admin.execute(
        f"SELECT TTL(start_ts) AS ttl FROM {shared_keyspace}.sessions_by_player WHERE player_id = %s",
        (player,),
    ).one()
    assert 364 * 86400 - 60 <= row.ttl <= 364 * 86400


async def test_retries_and_duplicates_leave_one_stored_copy(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    player = new_player()
    pair = session_pair(player, "2016-11-24T09:00:00", "2016-11-24T09:30:00", "DE")
    batch = [pair[0], pair[0], pair[1], pair[1]]
    for _ in range(3):  # a client retrying after timeouts
        assert (await post_events(client, batch)).status == 200
    assert len(stored_sessions(cassandra_admin, shared_keyspace, player)) == 1
    hour = 1479978000000 // 3_600_000  # 2016-11-24T09:00:00Z
    assert country_rows(cassandra_admin, shared_keyspace, "DE", hour, pair[0]["session_id"]) == 1


async def test_end_stored_days_before_its_start(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    player = new_player()
    first, last = session_pair(player, "2016-11-10T10:00:00", "2016-11-10T11:00:00")
    assert (await post_events(client, [last])).status == 200
    assert stored_sessions(cassandra_admin, shared_keyspace, player)[first["session_id"]][0] is None
    assert (await post_events(client, [first])).status == 200
    start_ts, end_ts, country = stored_sessions(cassandra_admin, shared_keyspace, player)[first["session_id"]]
    assert start_ts is not None and end_ts is not None and country == "FI"


async def test_a_100k_event_request(client: TestClient, cassandra_admin: Any, shared_keyspace: str) -> None:
    players = [new_player() for _ in range(5_000)]
    events = []
    for index in range(50_000):
        player = players[index % len(players)]
        minute = index % 1440
        events.extend(
            session_pair(player, f"2016-11-15T{minute // 60:02d}:{minute % 60:02d}:00", "2016-11-16T00:00:00", "US")
        )
    response = await post_events(client, events)
    assert response.status == 200
    assert await response.json() == {"received": 100_000, "accepted": 100_000, "discarded": 0, "rejected": []}
    for player in players[:50]:
        assert len(stored_sessions(cassandra_admin, shared_keyspace, player)) == 10


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{", "application/json", 400, "body: not valid JSON"),
        (b'{"event": "start"}', "application/json", 400, "body: must be a JSON array of event objects"),
        (b"[]", "application/json", 400, "body: no events"),
        (b"\n \n", "application/x-ndjson", 400, "body: no events"),
        (b"[]", "text/plain", 415, "content type must be one of application/json, application/x-ndjson"),
    ],
)
async def test_unusable_bodies(client: TestClient, body: bytes, content_type: str, status: int, message: str) -> None:
    response = await client.post("/v1/events", data=body, headers={"Content-Type": content_type})
    assert response.status == status
    assert (await response.json())["error"].startswith(message)


async def test_broken_gzip_is_400(client: TestClient) -> None:
    response = await client.post(
        "/v1/events",
        data=b"\x1f\x8b\x08garbage" * 10,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status == 400
    assert (await response.json())["error"] == "body: cannot be decoded as gzip"


async def test_too_many_events_is_413(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(config_for(shared_keyspace, ingest={"max_batch_events": 3})))
    player = new_player()
    events = [start(player, str(uuid.uuid4()), "2016-11-25T12:00:00") for _ in range(4)]
    response = await post_events(client, events)
    assert response.status == 413
    assert (await response.json())["error"] == "body: 4 events, more than the limit of 3"


async def test_gzip_bomb_is_413(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(config_for(shared_keyspace, ingest={"max_body_bytes": 100_000})))
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    response = await client.post(
        "/v1/events", data=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert response.status == 413
    assert (await response.json())["error"] == "body: larger than 100000 bytes after decompression"
