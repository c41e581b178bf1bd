"""A player's newest complete sessions, read newest start first so the cost follows the answer, not the year."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cassandra.query import BoundStatement

from cql.binding import FastBinder, encode_int, encode_text, encode_timestamp, encode_uuid, encode_uuid_list
from cql.driver import Database
from daemon.core.instants import datetime_to_ms

_SELECT_STARTS = "SELECT start_ts, session_id FROM {ks}.player_starts WHERE player_id = ? AND start_ts >= ? LIMIT ?"
# Resuming strictly after (older than) the last index row read.
_SELECT_STARTS_AFTER = (
    "SELECT start_ts, session_id FROM {ks}.player_starts"
    " WHERE player_id = ? AND (start_ts, session_id) < (?, ?) AND (start_ts) >= (?) LIMIT ?"
)
_SELECT_SESSIONS = (
    "SELECT session_id, start_ts, end_ts, country FROM {ks}.sessions_by_player WHERE player_id = ? AND session_id IN ?"
)

STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "player_starts": (_SELECT_STARTS, ("text", "timestamp", "int")),
    "player_starts_after": (_SELECT_STARTS_AFTER, ("text", "timestamp", "uuid", "timestamp", "int")),
    "player_sessions": (_SELECT_SESSIONS, ("text", "list<uuid>")),
}

# The first page expects a few of the newest sessions to lack their end (still open, or the end
# not stored yet); each further page is larger, so a player with many open sessions costs a few
# more round trips, never one per session. MAX_PAGE bounds the `session_id IN` list of one read.
FIRST_PAGE_SLACK = 0.5
MIN_SLACK = 4
PAGE_GROWTH = 4
MAX_PAGE = 400


@dataclass(frozen=True, slots=True)
class CompleteSession:
    session_id: uuid.UUID
    country: str
    start_ms: int
    end_ms: int


class PlayerSessions:
    """Pages through a player's start index newest first and looks each page's sessions up by id."""

    __slots__ = ("_db", "_sessions", "_starts", "_starts_after")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._starts = binders["player_starts"]
        self._starts_after = binders["player_starts_after"]
        self._sessions = binders["player_sessions"]

    async def complete_sessions(self, player_id: str, since_ms: int, limit: int) -> list[CompleteSession]:
        """The `limit` newest sessions with both halves stored and a start at or after `since_ms`.

        Every session's start has an index row at its start time, so once the index has been read
        down to `floor`, every session starting after `floor` is known, whatever its end says (an
        end stamped before its start included). When `limit` of those are complete, no unread
        session can rank above them: the read stops there. Sessions still without an end are the
        only rows read beyond the answer.
        """
        player = encode_text(player_id)
        complete: dict[uuid.UUID, CompleteSession] = {}
        page = limit + max(MIN_SLACK, int(limit * FIRST_PAGE_SLACK))
        after: tuple[int, uuid.UUID] | None = None
        while True:
            rows = await self._db.execute(self._index_page(player, since_ms, page, after))
            if rows:
                for session in await self._lookup(player, list(dict.fromkeys(session_id for _, session_id in rows))):
                    if session.start_ms >= since_ms:
                        complete[session.session_id] = session
            if len(rows) < page:
                break  # the index holds nothing older in the window: every candidate is known
            floor_ts, floor_id = rows[-1]
            after = (datetime_to_ms(floor_ts), floor_id)
            if sum(1 for session in complete.values() if session.start_ms > after[0]) >= limit:
                break
            page = min(page * PAGE_GROWTH, MAX_PAGE)
        newest = sorted(complete.values(), key=lambda session: (session.start_ms, session.session_id), reverse=True)
        return newest[:limit]

    def _index_page(
        self, player: bytes, since_ms: int, page: int, after: tuple[int, uuid.UUID] | None
    ) -> BoundStatement:
        since = encode_timestamp(since_ms)
        if after is None:
            return self._starts.bind([player, since, encode_int(page)])
        after_ms, after_id = after
        return self._starts_after.bind(
            [player, encode_timestamp(after_ms), encode_uuid(after_id), since, encode_int(page)]
        )

    async def _lookup(self, player: bytes, session_ids: list[uuid.UUID]) -> list[CompleteSession]:
        """The complete ones among `session_ids`, from their merged rows (start and end as stored)."""
        rows = await self._db.execute(self._sessions.bind([player, encode_uuid_list(session_ids)]))
        return [
            CompleteSession(session_id, country or "", datetime_to_ms(start), datetime_to_ms(end))
            for session_id, start, end, country in rows
            if start is not None and end is not None
        ]
