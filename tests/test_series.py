"""GET /v1/session-starts/series and the CSV answers on the real node: values against posted events for every
step, window edges, countries= and top=, settled and pending periods; CSV bodies; and every 400."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, session_pair, start

from daemon.rollups import ledger
from web import csv as csv_answers
from web.app import create_app
from web.keys import REFRESHER

pytestmark = pytest.mark.cassandra

NOW = dt.datetime(2016, 12, 1, tzinfo=dt.UTC)
QUIET = {"interval": 3600.0, "poll": 3600.0}
STEP = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
FMT = "%Y-%m-%dT%H:%M:%S"
CSV = {"Accept": "text/csv"}
COUNTRIES = ["FI", "SE", "EE", "DE", "NO"]


def at(moment: dt.datetime) -> str:
    return moment.strftime(FMT) + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "")


def history(rng: random.Random, sessions: int, days: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _ in range(sessions):
        begin = NOW - dt.timedelta(seconds=rng.randrange(0, int(days * 86400)))
        events.extend(session_pair(new_player(), at(begin), at(begin + dt.timedelta(minutes=5)), rng.choice(COUNTRIES)))
    rng.shuffle(events)
    return events


def edges(hours: float, step: str) -> list[dict[str, Any]]:
    """Starts on and just beside the series' edges: the first period's start, its last millisecond, now."""
    first = NOW - dt.timedelta(hours=hours)
    moments = [first, first - dt.timedelta(milliseconds=1), first + STEP[step] - dt.timedelta(milliseconds=1)]
    moments += [NOW, NOW - dt.timedelta(milliseconds=1)]
    return [start(new_player(), str(uuid.uuid4()), at(moment), "EE") for moment in moments]


def model(events: list[dict[str, Any]], hours: float, step: str) -> tuple[list[str], list[Counter[str]]]:
    """The series computed from the posted events: periods [NOW - hours + i * step, + step), all before NOW."""
    first = NOW - dt.timedelta(hours=hours)
    count = int(dt.timedelta(hours=hours) / STEP[step])
    periods = [first + i * STEP[step] for i in range(count)]
    counts = [Counter[str]() for _ in periods]
    for event in events:
        if event["event"] != "start":
            continue
        moment = dt.datetime.fromisoformat(event["ts"] + "+00:00")
        if first <= moment < NOW:
            counts[int((moment - first) / STEP[step])][event["country"]] += 1
    return [p.strftime(FMT) + "Z" for p in periods], counts


async def series(client: TestClient, query: str) -> dict[str, Any]:
    response = await client.get(f"/v1/session-starts/series?{query}")
    assert response.status == 200, await response.text()
    return await response.json()


async def assert_series_match(client: TestClient, events: list[dict[str, Any]], hours: float, step: str) -> None:
    periods, counts = model(events, hours, step)
    everything = Counter[str]()
    for period in counts:
        everything.update(period)
    body = await series(client, f"hours={hours}&step={step}")
    assert (body["periods"], body["settled"], body["pending_periods"]) == (periods, True, 0)
    assert body["series"] == {country: [c[country] for c in counts] for country in everything}
    assert list(body["series"]) == sorted(everything, key=lambda c: (-everything[c], c))  # largest first
    assert body["totals"] == dict(everything)

    named = await series(client, f"hours={hours}&step={step}&countries=SE,QQ,FI")
    assert named["series"] == {code: [c[code] for c in counts] for code in ("SE", "QQ", "FI")}  # zeros included

    top = await series(client, f"hours={hours}&step={step}&top=2")
    leaders = sorted(everything, key=lambda c: (-everything[c], c))[:2]
    assert list(top["series"]) == [*leaders, "other"] if len(everything) > 2 else leaders
    assert len(everything) <= 2 or top["series"]["other"] == [
        sum(c.values()) - sum(c[code] for code in leaders) for c in counts
    ]


async def test_series_match_posted_events_for_every_step_before_and_after_recounts(
    isolated_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace, rollups=QUIET)))
    rng = random.Random(3)
    events = history(rng, 300, 35) + history(rng, 80, 1)
    for hours, step in ((2, "minute"), (24, "hour"), (720, "day")):
        events += edges(hours, step)
    half = len(events) // 2
    assert (await post_events(client, events[:half])).status == 200
    await asyncio.sleep(ledger.CLOCK_SKEW_MARGIN_US / 1e6 + 0.1)
    await client.app[REFRESHER].refresh()  # the first half settled in rollups, the second pending
    assert (await post_events(client, events[half:])).status == 200
    for hours, step in ((2, "minute"), (25, "minute"), (24, "hour"), (720, "day"), (8760, "day")):
        await assert_series_match(client, events, hours, step)


async def test_an_unaligned_window_has_a_partial_newest_period(
    isolated_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    later = dt.datetime(2016, 12, 1, 0, 30, 15, tzinfo=dt.UTC)
    config = config_for(isolated_keyspace, rollups=QUIET, clock={"now": later.strftime(FMT) + "Z"})
    client = await aiohttp_client(create_app(config))
    moments = ["2016-11-30T23:30:15", "2016-11-30T23:59:59", "2016-12-01T00:30:15", "2016-12-01T00:30:16"]
    assert (await post_events(client, [start(new_player(), str(uuid.uuid4()), m, "FI") for m in moments])).status == 200
    body = await series(client, "hours=1&step=hour")
    # Periods starting in [now - 1 h, now): only 00:00, counted up to now inclusive.
    assert (body["periods"], body["series"], body["to"]) == (
        ["2016-12-01T00:00:00Z"],
        {"FI": [1]},
        "2016-12-01T00:30:15Z",
    )


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_csv_answers(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace, rollups=QUIET)))
    player = 'odd,"player"'  # a comma and quotes: CSV must quote it
    events: list[dict[str, Any]] = []
    for minute in range(23):
        moment = NOW - dt.timedelta(minutes=7 * minute + 1, seconds=1)
        events += session_pair(player, at(moment), at(moment + dt.timedelta(seconds=90)), "FI")
    assert (await post_events(client, events)).status == 200

    monkeypatch.setattr(csv_answers, "LISTING_PAGE", 5)  # five Cassandra pages, streamed one after another
    response = await client.get("/v1/countries/FI/session-starts?hours=24&limit=2", headers=CSV)
    assert response.status == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = read_csv(await response.text())
    starts = sorted((e for e in events if e["event"] == "start"), key=lambda e: e["ts"], reverse=True)
    assert rows == [["ts", "player_id", "session_id"], *([e["ts"] + "Z", player, e["session_id"]] for e in starts)]

    response = await client.get(f"/v1/players/{player}/sessions?limit=3", headers={"Accept": "text/csv;q=0.9, */*"})
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = read_csv(await response.text())
    assert rows[0] == ["session_id", "country", "start", "end", "duration_seconds"]
    assert [row[2] for row in rows[1:]] == [e["ts"] + "Z" for e in starts[:3]]
    assert {row[4] for row in rows[1:]} == {"90"}

    response = await client.get("/v1/session-starts/series?hours=2&step=hour&countries=FI,SE", headers=CSV)
    rows = read_csv(await response.text())
    firsts = Counter(e["ts"][:13] for e in starts if e["ts"] >= "2016-11-30T22")
    assert rows == [
        ["period", "FI", "SE"],
        ["2016-11-30T22:00:00Z", str(firsts["2016-11-30T22"]), "0"],
        ["2016-11-30T23:00:00Z", str(firsts["2016-11-30T23"]), "0"],
    ]
    json_answer = await client.get("/v1/session-starts/series?hours=2&step=hour", headers={"Accept": "text/csv;q=0"})
    assert json_answer.content_type == "application/json"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("step=hour", "hours: required"),
        ("hours=24", "step: required, one of minute, hour, day"),
        ("hours=24&step=week", "step: required, one of minute, hour, day"),
        ("hours=26&step=minute", "step=minute allows at most 25 hours; use step=hour"),
        ("hours=2000&step=hour", "step=hour allows at most 1500 hours; use step=day"),
        ("hours=12&step=day", "step=day needs a window of at least one day"),
        ("hours=0.01&step=minute", "step=minute needs a window of at least one minute"),
        ("hours=24&step=hour&countries=fi", "countries: 'fi' is not a country code"),
        ("hours=24&step=hour&countries=", "countries: '' is not a country code"),
        ("hours=24&step=hour&top=0", "top: must be 1..300"),
        ("hours=24&step=hour&top=x", "top: not an integer"),
        ("hours=24&step=hour&top=2&countries=FI", "countries and top: give one or the other"),
        ("hours=9000&step=day", "hours: must be greater than 0 and at most 8760"),
    ],
)
async def test_bad_series_parameters_are_400_with_a_reason(client: TestClient, query: str, message: str) -> None:
    response = await client.get(f"/v1/session-starts/series?{query}")
    assert response.status == 400
    assert (await response.json())["error"].startswith(message)
