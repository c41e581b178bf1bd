"""A heavy player's newest complete sessions on the real node: exact in any arrival order, and read in
a number of rows bounded by the answer (counted by Cassandra's own tracing), not by the player's year."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cassandra.query import SimpleStatement
from conftest import DEMO_NOW, config_for, end, new_player, post_events, start

from cql.driver import Database, Page
from cql.driver_internals import next_paging_state
from cql.player_sessions import SMALL_PARTITION
from cql.reads import Reads
from cql.schema import SCHEMA_VERSION, apply_schema, recorded_version
from daemon.core.instants import parse_instant

pytestmark = pytest.mark.cassandra

NOW = parse_instant(DEMO_NOW).replace(tzinfo=None)
NOW_MS = int(parse_instant(DEMO_NOW).timestamp() * 1000)
YEAR_MS = 365 * 86_400_000
HEAVY_COMPLETE = 3_000
NEWEST_OPEN = 25  # start-only sessions newer than every complete one
END_ONLY = 25  # ends whose start never arrives, newer than every complete start
BACKWARDS = 5  # complete sessions whose end is stamped days before their start, among the newest
POST_CHUNK = 1_500
# "Read 30 live rows and 0 tombstone cells" in the replica's trace of a read.
LIVE_ROWS = re.compile(r"Read (\d+) live rows")


class TracedDatabase(Database):
    """The same session, with every read traced: Cassandra reports how many rows each one read."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.cluster, db.session, db.keyspace)
        self.rows_read = 0
        self.requests = 0

    async def execute_page(
        self, query: Any, params: Any = None, fetch_size: int | None = 5000, paging_state: bytes | None = None
    ) -> Page:
        if isinstance(query, str):
            query = SimpleStatement(query)
        if fetch_size is not None:
            query.fetch_size = fetch_size
        response = self.session.execute_async(query, params, trace=True, paging_state=paging_state)
        result = await asyncio.to_thread(response.result)
        trace = await asyncio.to_thread(response.get_query_trace, 30)
        self.requests += 1
        counts = [int(match.group(1)) for event in trace.events if (match := LIVE_ROWS.search(event.description))]
        assert counts, f"no row count in the trace: {[event.description for event in trace.events]}"
        self.rows_read += sum(counts)
        return Page(list(result.current_rows), next_paging_state(response))


@pytest.fixture
async def traced(shared_keyspace: str) -> AsyncIterator[TracedDatabase]:
    db = await Database.connect(config_for(shared_keyspace).cassandra)
    try:
        yield TracedDatabase(db)
    finally:
        await db.close()


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def heavy_history(player: str, rng: random.Random) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """A year of sessions (events, shuffled) and the brute-force answer: (session_id, start, end), newest first."""
    events: list[dict[str, Any]] = []
    complete: list[tuple[dt.datetime, str, dt.datetime]] = []
    # Spread over the whole year, many crossing midnight and month ends (nothing is bucketed by
    # time, but the answer must not care either way).
    for index in range(HEAVY_COMPLETE):
        begin = NOW - dt.timedelta(days=2, seconds=rng.randrange(0, 360 * 86_400))
        if index % 10 == 0:  # ~23:5x, ending after midnight
            begin = begin.replace(hour=23, minute=50 + rng.randrange(0, 10))
        finish = begin + dt.timedelta(seconds=rng.randrange(60, 4 * 3_600))
        session = str(uuid.uuid4())
        events += [start(player, session, iso(begin)), end(player, session, iso(finish))]
        complete.append((begin, session, finish))
    for hours in range(BACKWARDS):  # the newest complete sessions, their ends stamped days earlier
        begin = NOW - dt.timedelta(hours=30 + hours)
        session = str(uuid.uuid4())
        events += [start(player, session, iso(begin)), end(player, session, iso(begin - dt.timedelta(days=3)))]
        complete.append((begin, session, begin - dt.timedelta(days=3)))
    for minutes in range(NEWEST_OPEN):
        events.append(start(player, str(uuid.uuid4()), iso(NOW - dt.timedelta(minutes=10 + minutes))))
    for minutes in range(END_ONLY):
        events.append(end(player, str(uuid.uuid4()), iso(NOW - dt.timedelta(minutes=5 + minutes))))
    complete.sort(key=lambda item: (item[0], uuid.UUID(item[1])), reverse=True)
    expected = [(session, iso(begin) + "Z", iso(finish) + "Z") for begin, session, finish in complete]
    rng.shuffle(events)
    # Every end goes in an earlier request than every start: each session's end is stored first.
    events.sort(key=lambda event: event["event"] == "start")
    return events, expected


async def post_all(client: TestClient, events: Sequence[dict[str, Any]]) -> None:
    for offset in range(0, len(events), POST_CHUNK):
        response = await post_events(client, list(events[offset : offset + POST_CHUNK]))
        assert response.status == 200, await response.text()


def answer(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(session["session_id"], session["start"], session["end"]) for session in body["sessions"]]


async def test_a_heavy_players_newest_complete_sessions_are_exact_and_cost_a_bounded_read(
    client: TestClient, traced: TracedDatabase
) -> None:
    player = new_player()
    events, expected = heavy_history(player, random.Random(13))
    await post_all(client, events)
    for limit in (1, 20, 100):
        body = await (await client.get(f"/v1/players/{player}/sessions?limit={limit}")).json()
        assert answer(body) == expected[:limit]
    # The backwards sessions are among the newest: found although their ends sort days earlier.
    assert {session for session, _, _ in expected[:BACKWARDS]} <= {row[0] for row in answer(body)[:BACKWARDS]}
    assert all(session["duration_seconds"] < 0 for session in body["sessions"][:BACKWARDS])

    reads = await Reads.prepare(traced)
    traced.requests = traced.rows_read = 0  # preparing reads the keyspace's layout: not the player's read
    since_ms = NOW_MS - YEAR_MS
    sessions = await reads.complete_sessions(player, since_ms, 20)
    assert [str(session.session_id) for session in sessions] == [session for session, _, _ in expected[:20]]
    # The first SMALL_PARTITION rows say the partition is large; then, past 25 open sessions to 20
    # complete ones, a first index page, one larger one, and a lookup of each, whatever the 3,000
    # sessions behind them hold.
    assert traced.requests <= 5
    assert traced.rows_read <= SMALL_PARTITION + 2 * (20 + NEWEST_OPEN) * 4
    bounded, requests = traced.rows_read, traced.requests

    # Known to be heavy now: the next read goes straight to the index, one request fewer, same answer.
    traced.requests = traced.rows_read = 0
    assert await reads.complete_sessions(player, since_ms, 20) == sessions
    assert (traced.requests, traced.rows_read) == (requests - 1, bounded - SMALL_PARTITION)

    # The counter is not vacuous: the whole partition, as the read before the index did it.
    traced.rows_read = 0
    prepared = await traced.prepare(f"SELECT session_id FROM {traced.keyspace}.sessions_by_player WHERE player_id = ?")
    rows = await traced.execute(prepared.bind((player,)))
    assert len(rows) == HEAVY_COMPLETE + BACKWARDS + NEWEST_OPEN + END_ONLY
    assert traced.rows_read == len(rows) > 5 * bounded


async def test_a_players_answer_is_the_same_whichever_request_brings_which_half(client: TestClient) -> None:
    """Sessions whose halves come one at a time in random order, checked against brute force after each request."""
    rng = random.Random(5)
    player = new_player()
    halves: list[dict[str, Any]] = []
    truth: dict[str, dict[str, str]] = {}
    for _ in range(120):
        begin = NOW - dt.timedelta(seconds=rng.randrange(0, 20 * 86_400))
        finish = begin + dt.timedelta(seconds=rng.randrange(-86_400, 7_200))  # some ends before their start
        session = str(uuid.uuid4())
        halves += [start(player, session, iso(begin)), end(player, session, iso(finish))]
        truth[session] = {}
    rng.shuffle(halves)
    for offset in range(0, len(halves), 40):
        chunk = halves[offset : offset + 40]
        await post_all(client, chunk)
        for event in chunk:
            truth[event["session_id"]][event["event"]] = event["ts"]
        complete = [
            (halves_of["start"], sid, halves_of["end"]) for sid, halves_of in truth.items() if len(halves_of) == 2
        ]
        complete.sort(key=lambda item: (item[0], uuid.UUID(item[1])), reverse=True)
        body = await (await client.get(f"/v1/players/{player}/sessions")).json()
        assert answer(body) == [(sid, begin + "Z", finish + "Z") for begin, sid, finish in complete[:20]]


async def test_schema_apply_indexes_the_sessions_a_version_3_keyspace_stored(
    isolated_keyspace: str, aiohttp_client: Any, cassandra_admin: Any
) -> None:
    from web.app import create_app

    config = config_for(isolated_keyspace)
    client = await aiohttp_client(create_app(config))
    player = new_player()
    events, expected = heavy_history(player, random.Random(3))
    await post_all(client, events)
    stored = await (await client.get(f"/v1/players/{player}/sessions")).json()
    # As a version 3 daemon would have left it: sessions stored, no start index, version 3 recorded.
    cassandra_admin.execute(f"TRUNCATE {isolated_keyspace}.player_starts")
    cassandra_admin.execute(
        f"UPDATE {isolated_keyspace}.schema_version SET version = 3 WHERE component = 'player-session-service'"
    )
    assert (await (await client.get(f"/v1/players/{player}/sessions")).json())["sessions"] == []
    db = await Database.connect(config.cassandra)
    try:
        assert await recorded_version(db, isolated_keyspace) == 3
        await apply_schema(db, config.cassandra, isolated_keyspace)
        assert await recorded_version(db, isolated_keyspace) == SCHEMA_VERSION
    finally:
        await db.close()
    assert answer(stored) == expected[:20]
    assert await (await client.get(f"/v1/players/{player}/sessions")).json() == stored
    (count,) = cassandra_admin.execute(
        f"SELECT COUNT(*) FROM {isolated_keyspace}.player_starts WHERE player_id = %s", (player,)
    ).one()
    assert count == HEAVY_COMPLETE + BACKWARDS + NEWEST_OPEN  # every stored start, nothing for the end-only ones
