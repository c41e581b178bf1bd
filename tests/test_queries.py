"""Query endpoints against the real node: windows, paging, totals, complete sessions, every 400."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cassandra.query import ValueSequence
from conftest import AiohttpClient, config_for, create_keyspace, new_player, post_events, session_pair, start

from daemon.core.timebuckets import partition_hour
from web.app import create_app
from web.keys import READ_PRIORITY, READS, REFRESHER

pytestmark = pytest.mark.cassandra

NOW = dt.datetime(2016, 12, 1, tzinfo=dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def ago(**delta: float) -> str:
    return iso(NOW - dt.timedelta(**delta))


@pytest.fixture
async def iso_client(isolated_keyspace: str, aiohttp_client: AiohttpClient) -> TestClient:
    """A client over a keyspace no other test writes to, so totals are exact."""
    return await aiohttp_client(create_app(config_for(isolated_keyspace)))


@pytest.fixture(params=[24, 1], ids=["day-partitions", "hour-partitions"])
def span_keyspace(request: pytest.FixtureRequest, cassandra_admin: Any) -> Iterator[str]:
    """A keyspace of its own whose country_starts partitions span a day (the default) or an hour
    (keyspaces created before the span was a setting): the listing must answer the same in both."""
    keyspace = create_keyspace(cassandra_admin, "pss_span", request.param)
    yield keyspace
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.fixture
async def listing_client(span_keyspace: str, aiohttp_client: AiohttpClient) -> TestClient:
    return await aiohttp_client(create_app(config_for(span_keyspace)))


async def refresh_rollups(client: TestClient) -> None:
    await client.app[REFRESHER].refresh()


async def all_pages(client: TestClient, country: str, hours: float, limit: int) -> list[dict[str, Any]]:
    starts: list[dict[str, Any]] = []
    url = f"/v1/countries/{country}/session-starts?hours={hours}&limit={limit}"
    response = await client.get(url)
    while True:
        assert response.status == 200, await response.text()
        body = await response.json()
        assert len(body["starts"]) <= limit
        starts.extend(body["starts"])
        if body["next"] is None:
            return starts
        response = await client.get(f"{url}&cursor={body['next']}")


async def test_country_listing_window_edges_and_order(listing_client: TestClient) -> None:
    player = new_player()
    inside_edge = start(player, str(uuid.uuid4()), ago(hours=4, seconds=-1), "FI")  # now - 4h + 1s
    at_lower_edge = start(player, str(uuid.uuid4()), ago(hours=4), "FI")  # excluded: window is (now-4h, now]
    at_now = start(player, str(uuid.uuid4()), iso(NOW), "FI")  # included
    future = start(player, str(uuid.uuid4()), "2016-12-01T00:00:01", "FI")  # after now: not in the window
    other = start(player, str(uuid.uuid4()), ago(hours=1), "SE")
    assert (await post_events(listing_client, [inside_edge, at_lower_edge, at_now, future, other])).status == 200
    response = await listing_client.get("/v1/countries/FI/session-starts?hours=4")
    body = await response.json()
    assert body["from"] == "2016-11-30T20:00:00Z" and body["to"] == "2016-12-01T00:00:00Z"
    assert [s["session_id"] for s in body["starts"]] == [at_now["session_id"], inside_edge["session_id"]]
    assert body["starts"][0] == {"ts": "2016-12-01T00:00:00Z", "player_id": player, "session_id": at_now["session_id"]}
    assert body["next"] is None and body["country"] == "FI" and body["hours"] == 4


async def test_paging_has_no_gaps_or_repeats_even_with_equal_timestamps(listing_client: TestClient) -> None:
    rng = random.Random(3)
    events = []
    for index in range(230):
        moment = NOW - dt.timedelta(seconds=rng.randrange(0, 30 * 3600))
        if index % 10 == 0:
            moment = NOW - dt.timedelta(hours=2)  # many starts in the same second
        events.append(start(new_player(), str(uuid.uuid4()), iso(moment), "EE"))
    assert (await post_events(listing_client, events)).status == 200
    pages = await all_pages(listing_client, "EE", 24, limit=7)
    one_page = await all_pages(listing_client, "EE", 24, limit=10_000)
    expected = {e["session_id"] for e in events if e["ts"] > ago(hours=24)}
    assert pages == one_page  # same starts in the same order, page boundaries changed nothing
    assert len(pages) == len(expected) and {p["session_id"] for p in pages} == expected
    assert [p["ts"] for p in pages] == sorted((p["ts"] for p in pages), reverse=True)


async def test_paging_across_runs_of_sparse_hours(listing_client: TestClient) -> None:
    """Hundreds of non-empty hours with a few starts each: several multi-partition reads per page."""
    rng = random.Random(8)
    events = []
    for hour in rng.sample(range(700), 300):  # more hours than the first request names
        for _ in range(rng.randrange(1, 4)):
            moment = NOW - dt.timedelta(hours=hour, seconds=rng.randrange(0, 3600))
            events.append(start(new_player(), str(uuid.uuid4()), iso(moment), "UY"))
    assert (await post_events(listing_client, events)).status == 200
    lower = ago(hours=720)
    expected = sorted(
        ((e["ts"], uuid.UUID(e["session_id"])) for e in events if lower < e["ts"] <= iso(NOW)), reverse=True
    )
    for limit in (1, 9, 130, 10_000):
        listed = await all_pages(listing_client, "UY", 720, limit=limit)
        assert [(p["ts"], uuid.UUID(p["session_id"])) for p in listed] == [(ts + "Z", sid) for ts, sid in expected]


async def test_the_hour_index_counts_plan_pages_but_wrong_counts_lose_nothing(
    listing_client: TestClient, cassandra_admin: Any, span_keyspace: str
) -> None:
    """The refresher copies each ended hour's count into the hour index; the listing plans its
    reads with it. Counts too low, too high or missing (stale, or not recounted yet) only cost
    another round trip: every start is still listed once, in order."""
    rng = random.Random(11)
    events = []
    for hour in rng.sample(range(1, 700), 280):
        for _ in range(rng.randrange(1, 5)):
            moment = NOW - dt.timedelta(hours=hour, seconds=rng.randrange(0, 3600))
            events.append(start(new_player(), str(uuid.uuid4()), iso(moment), "PY"))
    assert (await post_events(listing_client, events)).status == 200
    await refresh_rollups(listing_client)
    per_hour = Counter(int(dt.datetime.fromisoformat(e["ts"] + "+00:00").timestamp()) // 3600 for e in events)
    table = f"{span_keyspace}.start_hours_by_country"
    rows = cassandra_admin.execute(f"SELECT hour, starts FROM {table} WHERE country = 'PY'")
    stored = {row.hour: row.starts for row in rows}
    assert stored == dict(per_hour)
    lower = ago(hours=720)
    expected = sorted(((e["ts"] + "Z", e["session_id"]) for e in events if lower < e["ts"]), reverse=True)

    async def listed(limit: int) -> list[tuple[str, str]]:
        return [(p["ts"], p["session_id"]) for p in await all_pages(listing_client, "PY", 720, limit=limit)]

    assert await listed(100) == expected
    for index, hour in enumerate(sorted(stored)):
        wrong = (1, 1_000, None)[index % 3]  # too low, too high, missing
        cassandra_admin.execute(f"UPDATE {table} SET starts = %s WHERE country = 'PY' AND hour = %s", (wrong, hour))
    for limit in (1, 37, 100, 10_000):
        assert await listed(limit) == expected


async def test_cassandra_answers_partition_key_in_newest_hour_first(
    listing_client: TestClient, cassandra_admin: Any, span_keyspace: str
) -> None:
    """The listing relies on `hour_desc IN (...)` answering in ascending key order, whatever the
    order of the list: proven here on the real node so an upgrade that changes it fails a test."""
    span = listing_client.app[READS].partition_hours
    hours = [int(NOW.timestamp()) // 3600 - h for h in (1, 50, 300, 26, 4000)]  # five days, unordered
    events = [
        start(new_player(), str(uuid.uuid4()), iso(dt.datetime.fromtimestamp(h * 3600 + 60, dt.UTC)), "UG")
        for h in hours
    ]
    assert (await post_events(listing_client, events)).status == 200
    partitions = [partition_hour(hour, span) for hour in hours]
    rows = cassandra_admin.execute(
        f"SELECT hour_desc FROM {span_keyspace}.country_starts WHERE country = 'UG' AND hour_desc IN %s",
        (ValueSequence([-p for p in partitions]),),
    )
    assert [-row.hour_desc for row in rows] == sorted(partitions, reverse=True)


async def test_query_routes_count_as_answers_that_go_before_ingest_writes(client: TestClient) -> None:
    priority = client.app[READ_PRIORITY]
    player = new_player()
    before = priority.answered
    assert (await post_events(client, list(session_pair(player, ago(hours=2), ago(hours=1))))).status == 200
    assert priority.answered == before  # ingest is not an answer
    routes = [
        "/v1/countries/FI/session-starts?hours=3",
        "/v1/session-starts?hours=3",
        "/v1/session-starts/series?hours=3&step=hour",
        f"/v1/players/{player}/sessions",
        "/fetch/FI/3",
        f"/complete_sessions/{player}",
    ]
    for url in routes:
        assert (await client.get(url)).status == 200, url
    assert priority.answered == before + len(routes)
    assert (await client.get("/healthz")).status == 200
    assert priority.answered == before + len(routes)


async def test_unknown_country_is_empty(client: TestClient) -> None:
    body = await (await client.get("/v1/countries/QQ/session-starts?hours=8760")).json()
    assert body["starts"] == [] and body["next"] is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/v1/countries/fi/session-starts?hours=1", "country: must be two uppercase letters"),
        ("/v1/countries/FIN/session-starts?hours=1", "country: must be two uppercase letters"),
        ("/v1/countries/FI/session-starts", "hours: required"),
        ("/v1/countries/FI/session-starts?hours=0", "hours: must be greater than 0 and at most 8760"),
        ("/v1/countries/FI/session-starts?hours=-2", "hours: must be greater than 0"),
        ("/v1/countries/FI/session-starts?hours=8760.5", "hours: must be greater than 0 and at most 8760"),
        ("/v1/countries/FI/session-starts?hours=nan", "hours: must be greater than 0"),
        ("/v1/countries/FI/session-starts?hours=abc", "hours: not a number"),
        ("/v1/countries/FI/session-starts?hours=1&limit=0", "limit: must be 1..10000"),
        ("/v1/countries/FI/session-starts?hours=1&limit=10001", "limit: must be 1..10000"),
        ("/v1/countries/FI/session-starts?hours=1&limit=ten", "limit: not an integer"),
        ("/v1/countries/FI/session-starts?hours=1&cursor=bogus", "cursor: not a cursor"),
        ("/v1/session-starts?hours=8761", "hours: must be greater than 0 and at most 8760"),
        ("/v1/session-starts", "hours: required"),
        ("/v1/players/p1/sessions?limit=0", "limit: must be 1..100"),
        ("/v1/players/p1/sessions?limit=101", "limit: must be 1..100"),
        (f"/v1/players/{'x' * 129}/sessions", "player_id: longer than 128 characters"),
    ],
)
async def test_bad_parameters_are_400_with_a_reason(client: TestClient, url: str, message: str) -> None:
    response = await client.get(url)
    assert response.status == 400
    assert (await response.json())["error"].startswith(message)


async def test_a_cursor_for_another_country_is_refused(iso_client: TestClient) -> None:
    events = [start(new_player(), str(uuid.uuid4()), ago(minutes=m + 1), "LV") for m in range(3)]
    assert (await post_events(iso_client, events)).status == 200
    body = await (await iso_client.get("/v1/countries/LV/session-starts?hours=1&limit=1")).json()
    response = await iso_client.get(f"/v1/countries/LT/session-starts?hours=1&cursor={body['next']}")
    assert response.status == 400


async def test_totals_per_country_match_the_listing(iso_client: TestClient) -> None:
    rng = random.Random(5)
    countries = ["FI", "EE", "SE", "NA"]
    events = []
    for _ in range(600):
        moment = NOW - dt.timedelta(seconds=rng.randrange(-3600, 400 * 86400))
        events.append(start(new_player(), str(uuid.uuid4()), iso(moment), rng.choice(countries)))
    response = await post_events(iso_client, events)
    assert response.status == 200
    await refresh_rollups(iso_client)
    for hours in (0.5, 1, 24, 100.25, 24 * 45, 8760):
        body = await (await iso_client.get(f"/v1/session-starts?hours={hours}")).json()
        lower = ago(hours=hours)
        expected = Counter(e["country"] for e in events if lower < e["ts"] <= iso(NOW))
        assert body["countries"] == dict(expected), hours
        assert body["total"] == sum(expected.values())
        listed = await all_pages(iso_client, "FI", hours, limit=10_000)
        assert len(listed) == expected["FI"]


async def test_totals_ignore_duplicates_and_retries(iso_client: TestClient) -> None:
    event = start(new_player(), str(uuid.uuid4()), ago(minutes=30), "DK")
    for _ in range(3):
        assert (await post_events(iso_client, [event, event])).status == 200
        await refresh_rollups(iso_client)
    body = await (await iso_client.get("/v1/session-starts?hours=1")).json()
    assert body["countries"] == {"DK": 1}


async def test_the_20_newest_complete_sessions_despite_newer_incomplete_ones(client: TestClient) -> None:
    player = new_player()
    complete = [session_pair(player, ago(hours=100 - h), ago(hours=100 - h, minutes=-8)) for h in range(25)]
    newest_incomplete = [start(player, str(uuid.uuid4()), ago(hours=h)) for h in range(1, 30)]
    events = [e for pair in complete for e in pair] + newest_incomplete
    random.Random(1).shuffle(events)
    assert (await post_events(client, events)).status == 200
    body = await (await client.get(f"/v1/players/{player}/sessions")).json()
    expected = [pair[0]["session_id"] for pair in reversed(complete)][:20]
    assert [s["session_id"] for s in body["sessions"]] == expected
    first = body["sessions"][0]
    assert first["duration_seconds"] == 480 and first["country"] == "FI"
    assert first["start"] == ago(hours=76) + "Z" and first["end"] == ago(hours=76, minutes=-8) + "Z"
    limited = await (await client.get(f"/v1/players/{player}/sessions?limit=3")).json()
    assert [s["session_id"] for s in limited["sessions"]] == expected[:3]


async def test_same_second_starts_end_before_start_and_the_one_year_edge(client: TestClient) -> None:
    player = new_player()
    twin_a = session_pair(player, ago(hours=5), ago(hours=4))
    twin_b = session_pair(player, ago(hours=5), ago(hours=3))
    late_start = session_pair(player, ago(hours=10), ago(hours=9))
    assert (await post_events(client, [*twin_a, *twin_b, late_start[1]])).status == 200
    assert (await post_events(client, [late_start[0]])).status == 200  # the end came first
    almost_a_year = session_pair(player, "2015-12-02T12:00:00", "2015-12-02T13:00:00")
    assert (await post_events(client, list(almost_a_year))).status == 200
    body = await (await client.get(f"/v1/players/{player}/sessions")).json()
    ids = [s["session_id"] for s in body["sessions"]]
    assert sorted(ids[:2]) == sorted([twin_a[0]["session_id"], twin_b[0]["session_id"]])
    assert ids[2:] == [late_start[0]["session_id"], almost_a_year[0]["session_id"]]


async def test_reads_drop_what_a_later_clock_sees_as_older_than_a_year(
    isolated_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    """Rows still alive (their TTL was set by an earlier clock) must not leak into answers."""
    early = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    player = new_player()
    old = session_pair(player, "2015-12-02T12:00:00", "2015-12-02T13:00:00", "PT")
    recent = session_pair(player, "2016-11-30T12:00:00", "2016-11-30T13:00:00", "PT")
    assert (await post_events(early, [*old, *recent])).status == 200
    await refresh_rollups(early)
    later = await aiohttp_client(
        create_app(config_for(isolated_keyspace, clock={"now": "2016-12-02T00:00:00Z"}))
    )
    body = await (await later.get(f"/v1/players/{player}/sessions")).json()
    assert [s["session_id"] for s in body["sessions"]] == [recent[0]["session_id"]]
    listing = await (await later.get("/v1/countries/PT/session-starts?hours=8760")).json()
    assert [s["session_id"] for s in listing["starts"]] == [recent[0]["session_id"]]
    totals = await (await later.get("/v1/session-starts?hours=8760")).json()
    assert totals["countries"] == {"PT": 1}


async def test_unknown_player_is_an_empty_list(client: TestClient) -> None:
    body = await (await client.get(f"/v1/players/{new_player()}/sessions")).json()
    assert body["sessions"] == []


async def test_against_an_in_memory_model_of_shuffled_requests(iso_client: TestClient) -> None:
    rng = random.Random(11)
    players = [new_player() for _ in range(40)]
    countries = ["FI", "EE", "SE", "DE", "NA", "GH"]
    truth: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for _ in range(1500):
        player = rng.choice(players)
        begin = NOW - dt.timedelta(seconds=rng.randrange(-7200, 370 * 86400))
        finish = begin + dt.timedelta(seconds=rng.randrange(30, 7200))
        first, last = session_pair(player, iso(begin), iso(finish), rng.choice(countries))
        kind = rng.random()
        keep = [first, last] if kind < 0.9 else ([first] if kind < 0.95 else [last])
        events.extend(keep)
        truth[first["session_id"]] = {"player": player, "start": first, "end": last, "kept": keep}
    rng.shuffle(events)
    for offset in range(0, len(events), 97):
        assert (await post_events(iso_client, events[offset : offset + 97])).status in (200,)
    await refresh_rollups(iso_client)
    year_ago = iso(NOW - dt.timedelta(days=365))
    stored_starts = [t["start"] for t in truth.values() if t["start"] in t["kept"] and t["start"]["ts"] >= year_ago]
    for hours in (3, 24, 24 * 7, 8760):
        lower = ago(hours=hours)
        expected = Counter(s["country"] for s in stored_starts if lower < s["ts"] <= iso(NOW))
        body = await (await iso_client.get(f"/v1/session-starts?hours={hours}")).json()
        assert body["countries"] == dict(expected)
        for country in countries[:2]:
            listed = await all_pages(iso_client, country, hours, limit=50)
            assert sorted(s["session_id"] for s in listed) == sorted(
                s["session_id"] for s in stored_starts if s["country"] == country and lower < s["ts"] <= iso(NOW)
            )
    for player in players:
        complete = [
            t for t in truth.values()
            if t["player"] == player and len(t["kept"]) == 2 and t["start"]["ts"] >= year_ago
        ]
        complete.sort(key=lambda t: t["start"]["ts"], reverse=True)
        body = await (await iso_client.get(f"/v1/players/{player}/sessions")).json()
        got = [s["session_id"] for s in body["sessions"]]
        assert len(got) == min(20, len(complete))
        assert [s["start"] for s in body["sessions"]] == [t["start"]["ts"] + "Z" for t in complete[:20]]
