"""Query-side reads: a country's session starts page by page, and a player's complete sessions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cassandra.query import PreparedStatement

from cql.driver import Database
from daemon.events import MS_PER_HOUR, datetime_to_ms

_SELECT_HOURS = (
    "SELECT hour FROM {ks}.start_hours_by_country WHERE country = ? AND hour >= ? AND hour <= ?"
)
_SELECT_STARTS = (
    "SELECT ts, session_id, player_id FROM {ks}.starts_by_country"
    " WHERE country = ? AND hour = ? AND ts >= ? AND ts < ? LIMIT ?"
)
# Resuming inside the cursor's hour: strictly after (older than) the last start returned.
_SELECT_STARTS_AFTER = (
    "SELECT ts, session_id, player_id FROM {ks}.starts_by_country"
    " WHERE country = ? AND hour = ? AND (ts, session_id) < (?, ?) LIMIT ?"
)
_SELECT_SESSIONS = "SELECT session_id, start_ts, end_ts, country FROM {ks}.sessions_by_player WHERE player_id = ?"


@dataclass(frozen=True, slots=True, order=True)
class StartPosition:
    """Where a listing stopped: the (hour, ts, session_id) of the last start returned."""

    hour: int
    ts_ms: int
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StoredStart:
    ts_ms: int
    session_id: uuid.UUID
    player_id: str


@dataclass(frozen=True, slots=True)
class CompleteSession:
    session_id: uuid.UUID
    country: str
    start_ms: int
    end_ms: int


class Reads:
    """Prepared read statements and the logic that stitches their single-partition results."""

    __slots__ = ("_db", "_hours", "_starts", "_starts_after", "_sessions")

    def __init__(self, db: Database, statements: Mapping[str, PreparedStatement]) -> None:
        self._db = db
        self._hours = statements["hours"]
        self._starts = statements["starts"]
        self._starts_after = statements["starts_after"]
        self._sessions = statements["sessions"]

    @classmethod
    async def prepare(cls, db: Database) -> Reads:
        queries = {
            "hours": _SELECT_HOURS,
            "starts": _SELECT_STARTS,
            "starts_after": _SELECT_STARTS_AFTER,
            "sessions": _SELECT_SESSIONS,
        }
        return cls(db, {name: await db.prepare(query.format(ks=db.keyspace)) for name, query in queries.items()})

    async def country_starts(
        self, country: str, start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> tuple[list[StoredStart], StartPosition | None]:
        """Up to `limit` starts in [start_ms, end_ms), newest first, after `after`; and where to resume.

        The hour index tells which hours hold starts, so empty hours cost nothing; hours are read
        in growing concurrent waves until the page is full.
        """
        last_hour = (end_ms - 1) // MS_PER_HOUR if after is None else after.hour
        hour_rows = await self._db.execute(self._hours, (country, start_ms // MS_PER_HOUR, last_hour))
        hours = [hour for (hour,) in hour_rows]  # newest first (clustering order)
        found: list[tuple[int, StoredStart]] = []
        # First wave small (a busy hour can fill a page alone), then wider: every wave is one
        # round trip, and sparse countries need one read per non-empty hour.
        wave = 8
        index = 0
        while index < len(hours) and len(found) <= limit:
            batch = hours[index : index + wave]
            index += len(batch)
            want = limit + 1 - len(found)  # one extra tells whether another page exists
            results = await asyncio.gather(
                *(self._hour_starts(country, hour, start_ms, end_ms, want, after) for hour in batch)
            )
            for hour, rows in zip(batch, results, strict=True):
                found.extend((hour, row) for row in rows)
            wave = min(wave * 4, 256)
        page = found[:limit]
        if len(found) <= limit or not page:
            return [start for _, start in page], None
        hour, last = page[-1]
        return [start for _, start in page], StartPosition(hour, last.ts_ms, last.session_id)

    async def _hour_starts(
        self, country: str, hour: int, start_ms: int, end_ms: int, limit: int, after: StartPosition | None
    ) -> list[StoredStart]:
        if after is not None and hour == after.hour:
            rows = await self._db.execute(self._starts_after, (country, hour, after.ts_ms, after.session_id, limit))
        else:
            rows = await self._db.execute(self._starts, (country, hour, start_ms, end_ms, limit))
        starts = [StoredStart(datetime_to_ms(ts), session_id, player_id) for ts, session_id, player_id in rows]
        return [start for start in starts if start_ms <= start.ts_ms < end_ms]

    async def complete_sessions(self, player_id: str, since_ms: int, limit: int) -> list[CompleteSession]:
        """The `limit` newest sessions with both halves stored and a start at or after `since_ms`.

        The whole partition is one read (a player's sessions of the last year): filtering before
        the limit is what makes "the 20 newest complete" exact when newer sessions are incomplete.
        """
        rows = await self._db.execute(self._sessions, (player_id,))
        sessions = [
            CompleteSession(session_id, country or "", datetime_to_ms(start), datetime_to_ms(end))
            for session_id, start, end, country in rows
            if start is not None and end is not None
        ]
        recent = [session for session in sessions if session.start_ms >= since_ms]
        recent.sort(key=lambda session: (session.start_ms, session.session_id), reverse=True)
        return recent[:limit]
