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
from cql.layout import LEGACY_HOURS, partition_hours
from cql.player_sessions import STATEMENTS as PLAYER_STATEMENTS
from cql.player_sessions import CompleteSession, PlayerSessions
from daemon.core.instants import MS_PER_HOUR, datetime_to_ms
from daemon.core.timebuckets import partition_hour

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
# (written by the rollup refresher), so the first wave names the partitions holding the hours the
# page needs, in concurrent runs of RUN_PARTITIONS. Without counts (none recounted yet) it names
# the partitions of FIRST_HOURS hours in one request. When a wave falls short (counts stale or
# missing), the next covers the hours the page still needs at the density seen so far (plus a
# quarter), at most MAX_WAVE_HOURS. A sparse country's month (hundreds of non-empty hours with a
# few starts each) is then one wave: one request of ~30 day partitions, or concurrent requests of
# hour partitions in a keyspace whose partitions span an hour.
FIRST_HOURS = 256
RUN_PARTITIONS = 64
MAX_WAVE_HOURS = 1024
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

    __slots__ = ("_db", "_hours", "_players", "_starts", "_starts_after", "partition_hours")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder], span: int = LEGACY_HOURS) -> None:
        self._db = db
        self.partition_hours = span  # hours per country_starts partition, as the keyspace records it
        self._hours = binders["hours"]
        self._starts = binders["starts"]
        self._starts_after = binders["starts_after"]
        self._players = PlayerSessions(db, binders)

    @classmethod
    async def prepare(cls, db: Database) -> Reads:
        binders = {}
        for name, (query, types) in _STATEMENTS.items():
            binders[name] = FastBinder(await db.prepare(query.format(ks=db.keyspace)), types)
        return cls(db, binders, await partition_hours(db))

    async def country_starts(
        self, country: str, start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> tuple[list[StoredStart], StartPosition | None]:
        """Up to `limit` starts in [start_ms, end_ms), newest first, after `after`; and where to resume.

        The hour index tells which hours hold starts, so empty hours cost nothing; the partitions
        holding them are read with multi-partition requests until the page is full.
        """
        last_hour = (end_ms - 1) // MS_PER_HOUR if after is None else after.hour
        hour_rows = await self._db.execute(
            self._hours.bind([encode_text(country), encode_int(start_ms // MS_PER_HOUR), encode_int(last_hour)])
        )
        hours = [hour for hour, _ in hour_rows]  # newest first (clustering order)
        counts = [starts for _, starts in hour_rows]
        if after is not None and counts:
            counts[0] = 0  # the cursor's hour: part of it was on earlier pages
        span = self.partition_hours
        found: list[StoredStart] = []
        index = 0
        while index < len(hours) and len(found) <= limit:
            want = limit + 1 - len(found)  # one extra tells whether another page exists
            wave = _first_wave(counts, want) if index == 0 else _next_wave(len(found) / index, want)
            wave = _whole_partitions(hours, index, min(wave, len(hours) - index), span)
            # Uncounted, the first wave is one request: it stops at the LIMIT wherever the rows are.
            size = FIRST_HOURS if index == 0 and not any(counts) else RUN_PARTITIONS
            runs = _partition_runs(hours[index : index + wave], span, size)
            index += wave
            reads = (self._run_starts(country, run, start_ms, end_ms, want, after) for run in runs)
            for rows in await asyncio.gather(*reads):
                found.extend(rows)
        page = found[:limit]
        if len(found) <= limit or not page:
            return page, None
        last = page[-1]
        return page, StartPosition(last.ts_ms // MS_PER_HOUR, last.ts_ms, last.session_id)

    async def _run_starts(
        self, country: str, partitions: list[int], start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> list[StoredStart]:
        """Up to `limit` starts of a run of partitions, named by their first hours (newest first)."""
        keys = encode_int_list([-hour for hour in partitions])
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
            # partitions differently): the LIMIT may have kept the wrong rows, so ask one by one.
            if len(partitions) == 1:
                raise RuntimeError("country_starts: rows of one partition out of clustering order")
            log.warning("country_starts: multi-partition read out of key order; reading partition by partition")
            parts = await asyncio.gather(
                *(self._run_starts(country, [hour], start_ms, end_ms, limit, after) for hour in partitions)
            )
            return [row for part in parts for row in part][:limit]
        return [StoredStart(ts, session_id, player_id) for _, ts, session_id, player_id in rows]

    async def complete_sessions(self, player_id: str, since_ms: int, limit: int) -> list[CompleteSession]:
        """The `limit` newest complete sessions of a player starting at or after `since_ms`."""
        return await self._players.complete_sessions(player_id, since_ms, limit)


def _first_wave(counts: list[int | None], want: int) -> int:
    """How many hours (newest first) hold the next `want` rows by their counts; FIRST_HOURS if none is counted."""
    known = [count for count in counts if count]  # a zero is the cursor's hour, not a count
    if not known:
        return FIRST_HOURS
    guess = sum(known) / len(known)  # for the hours not counted yet, such as the open one
    expected = 0.0
    needed = 0
    while needed < len(counts) and expected < want:
        count = counts[needed]
        expected += guess if count is None else count
        needed += 1
    return needed


def _next_wave(density: float, want: int) -> int:
    """How many more hours to read for `want` more rows at `density` rows per hour, within MAX_WAVE_HOURS."""
    span = math.ceil(want / density * MARGIN) if density > 0 else MAX_WAVE_HOURS
    return min(max(span, RUN_PARTITIONS), MAX_WAVE_HOURS)


def _whole_partitions(hours: list[int], index: int, count: int, span: int) -> int:
    """`count` hours from `index`, grown to the end of the last one's partition: a partition is read once, whole."""
    end = index + count
    if count == 0:
        return 0
    last = partition_hour(hours[end - 1], span)
    while end < len(hours) and partition_hour(hours[end], span) == last:
        end += 1
    return end - index


def _partition_runs(hours: list[int], span: int, size: int = RUN_PARTITIONS) -> list[list[int]]:
    """The partitions holding `hours` (newest first, each once), cut into runs of at most `size`."""
    partitions = list(dict.fromkeys(partition_hour(hour, span) for hour in hours))
    return [partitions[offset : offset + size] for offset in range(0, len(partitions), size)]
