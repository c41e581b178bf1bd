"""Query-side reads: a country's session starts page by page, and a player's complete sessions."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cql.binding import FastBinder, encode_int, encode_int_list, encode_text, encode_timestamp, encode_uuid
from cql.driver import Database
from cql.player_sessions import STATEMENTS as PLAYER_STATEMENTS
from cql.player_sessions import CompleteSession, PlayerSessions
from daemon.core.instants import MS_PER_HOUR, datetime_to_ms

log = logging.getLogger(__name__)

_SELECT_HOURS = (
    "SELECT hour, starts FROM {ks}.start_hours_by_country WHERE country = ? AND hour >= ? AND hour <= ?"
)
# A run of hours in one request: `hour_desc IN` answers in ascending key order, newest hour first.
_SELECT_STARTS = (
    "SELECT hour_desc, ts, session_id, player_id FROM {ks}.country_starts"
    " WHERE country = ? AND hour_desc IN ? AND ts >= ? AND ts < ? LIMIT ?"
)
# Resuming after the cursor: strictly after (older than) the last start returned. Every row of an
# older hour is older than the cursor's start, so one restriction serves the whole run.
_SELECT_STARTS_AFTER = (
    "SELECT hour_desc, ts, session_id, player_id FROM {ks}.country_starts"
    " WHERE country = ? AND hour_desc IN ? AND (ts, session_id) < (?, ?) AND (ts) >= (?) LIMIT ?"
)

_STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "hours": (_SELECT_HOURS, ("text", "int", "int")),
    "starts": (_SELECT_STARTS, ("text", "list<int>", "timestamp", "timestamp", "int")),
    "starts_after": (_SELECT_STARTS_AFTER, ("text", "list<int>", "timestamp", "uuid", "timestamp", "int")),
    **PLAYER_STATEMENTS,
}

# Cassandra reads the partitions of one `IN` request one after another and stops at its LIMIT,
# so a busy country's page costs one request whatever the request names, and runs beyond the
# page's end read their partitions for nothing. The hour index carries each ended hour's count
# (written by the rollup refresher), so the first wave names the hours the page needs, in
# concurrent runs of RUN_HOURS. Without counts (none recounted yet) it names FIRST_HOURS hours in
# one request. When a wave falls short (counts stale or missing), the next covers the hours the
# page still needs at the density seen so far (plus a quarter). A sparse country's month
# (hundreds of non-empty hours with a few starts each) is then one wave of concurrent requests.
FIRST_HOURS = 256
RUN_HOURS = 64
MAX_RUNS = 16
MARGIN = 1.25


@dataclass(frozen=True, slots=True, order=True)
class StartPosition:
    """Where a listing stopped: the (hour, ts, session_id) of the last start returned."""

    hour: int
    ts_ms: int
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StoredStart:
    # As the driver returns it (naive UTC): a page of 1,000 starts is encoded straight from it by
    # orjson, without converting each one to milliseconds and back (half the listing's CPU).
    ts: dt.datetime
    session_id: uuid.UUID
    player_id: str

    @property
    def ts_ms(self) -> int:
        return datetime_to_ms(self.ts)


class Reads:
    """Prepared read statements and the logic that stitches their results."""

    __slots__ = ("_db", "_hours", "_players", "_starts", "_starts_after")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._hours = binders["hours"]
        self._starts = binders["starts"]
        self._starts_after = binders["starts_after"]
        self._players = PlayerSessions(db, binders)

    @classmethod
    async def prepare(cls, db: Database) -> Reads:
        binders = {}
        for name, (query, types) in _STATEMENTS.items():
            binders[name] = FastBinder(await db.prepare(query.format(ks=db.keyspace)), types)
        return cls(db, binders)

    async def country_starts(
        self, country: str, start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> tuple[list[StoredStart], StartPosition | None]:
        """Up to `limit` starts in [start_ms, end_ms), newest first, after `after`; and where to resume.

        The hour index tells which hours hold starts, so empty hours cost nothing; runs of
        non-empty hours are read with multi-partition requests until the page is full.
        """
        last_hour = (end_ms - 1) // MS_PER_HOUR if after is None else after.hour
        hour_rows = await self._db.execute(
            self._hours.bind([encode_text(country), encode_int(start_ms // MS_PER_HOUR), encode_int(last_hour)])
        )
        hours = [hour for hour, _ in hour_rows]  # newest first (clustering order)
        counts = [starts for _, starts in hour_rows]
        if after is not None and counts:
            counts[0] = 0  # the cursor's hour: part of it was on earlier pages
        found: list[tuple[int, StoredStart]] = []
        index = 0
        while index < len(hours) and len(found) <= limit:
            want = limit + 1 - len(found)  # one extra tells whether another page exists
            runs = _first_wave(hours, counts, want) if index == 0 else _runs(hours[index:], want, len(found) / index)
            index += sum(map(len, runs))
            results = await asyncio.gather(*(self._run_starts(country, run, start_ms, end_ms, want, after) for run in runs))
            for rows in results:
                found.extend(rows)
        page = found[:limit]
        if len(found) <= limit or not page:
            return [start for _, start in page], None
        hour, last = page[-1]
        return [start for _, start in page], StartPosition(hour, last.ts_ms, last.session_id)

    async def _run_starts(
        self, country: str, hours: list[int], start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> list[tuple[int, StoredStart]]:
        """Up to `limit` starts of a run of hours (newest first), each with its hour."""
        keys = encode_int_list([-hour for hour in hours])
        if after is None:
            values = [encode_text(country), keys, encode_timestamp(start_ms), encode_timestamp(end_ms), encode_int(limit)]
            statement = self._starts.bind(values)
        else:
            values = [
                encode_text(country), keys, encode_timestamp(after.ts_ms), encode_uuid(after.session_id),
                encode_timestamp(start_ms), encode_int(limit),
            ]
            statement = self._starts_after.bind(values)
        rows = await self._db.execute(statement)
        if any(rows[i][0] > rows[i + 1][0] for i in range(len(rows) - 1)):
            # Not the newest-first order this read relies on (a Cassandra version that orders IN
            # partitions differently): the LIMIT may have kept the wrong rows, so ask hour by hour.
            if len(hours) == 1:
                raise RuntimeError("country_starts: rows of one partition out of clustering order")
            log.warning("country_starts: multi-partition read out of key order; reading hour by hour")
            parts = await asyncio.gather(
                *(self._run_starts(country, [hour], start_ms, end_ms, limit, after) for hour in hours)
            )
            return [row for part in parts for row in part][:limit]
        return [
            (-hour_desc, StoredStart(ts, session_id, player_id))
            for hour_desc, ts, session_id, player_id in rows
        ]

    async def complete_sessions(self, player_id: str, since_ms: int, limit: int) -> list[CompleteSession]:
        """The `limit` newest complete sessions of a player starting at or after `since_ms`."""
        return await self._players.complete_sessions(player_id, since_ms, limit)


def _first_wave(hours: list[int], counts: list[int | None], want: int) -> list[list[int]]:
    """The hours holding the next `want` rows by their counts, in runs; FIRST_HOURS if none is counted."""
    known = [count for count in counts if count]  # a zero is the cursor's hour, not a count
    if not known:
        return [hours[:FIRST_HOURS]]
    guess = sum(known) / len(known)  # for the hours not counted yet, such as the open one
    expected = 0.0
    needed = 0
    while needed < len(hours) and expected < want:
        count = counts[needed]
        expected += guess if count is None else count
        needed += 1
    return _in_runs(hours, needed)


def _runs(hours: list[int], want: int, density: float) -> list[list[int]]:
    """The next wave: enough of `hours` for `want` more rows at `density` rows per hour, in runs."""
    span = math.ceil(want / density * MARGIN) if density > 0 else MAX_RUNS * RUN_HOURS
    span = min(max(span, RUN_HOURS), MAX_RUNS * RUN_HOURS)
    return _in_runs(hours, min(span, len(hours)))


def _in_runs(hours: list[int], count: int) -> list[list[int]]:
    """The first `count` of `hours` cut into runs of at most RUN_HOURS, one request each."""
    return [hours[offset : min(offset + RUN_HOURS, count)] for offset in range(0, count, RUN_HOURS)]
