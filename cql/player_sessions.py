"""A player's newest complete sessions, read newest start first so the cost follows the answer, not the year."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
_SELECT_FEW = "SELECT session_id, start_ts, end_ts, country FROM {ks}.sessions_by_player WHERE player_id = ? LIMIT ?"

STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "player_starts": (_SELECT_STARTS, ("text", "timestamp", "int")),
    "player_starts_after": (_SELECT_STARTS_AFTER, ("text", "timestamp", "uuid", "timestamp", "int")),
    "player_sessions": (_SELECT_SESSIONS, ("text", "list<uuid>")),
    "player_few": (_SELECT_FEW, ("text", "int")),
}

# Most players hold a few dozen sessions (the reference data: at most 50 complete per player).
# Their whole partition is one read of under SMALL_PARTITION rows, cheaper than the index's two
# (measured: ~0.7 ms of daemon CPU for 10 rows, ~6 µs per further row, ~2 ms for the index's
# pair), so every read first asks for SMALL_PARTITION rows: fewer means that was all of them.
SMALL_PARTITION = 64
# Players seen with at least SMALL_PARTITION rows, most recent last: their next read goes straight to
# the index, one round trip fewer. Only a shortcut: the index answers exactly for any player, so a
# player remembered here whose old sessions have since expired is still answered right.
HEAVY_MEMORY = 10_000

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
    """Reads a small partition whole; pages through a larger one's start index and looks the sessions up by id."""

    __slots__ = ("_db", "_few", "_heavy", "_sessions", "_starts", "_starts_after")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._starts = binders["player_starts"]
        self._starts_after = binders["player_starts_after"]
        self._sessions = binders["player_sessions"]
        self._few = binders["player_few"]
        self._heavy: OrderedDict[str, None] = OrderedDict()

    async def complete_sessions(self, player_id: str, since_ms: int, limit: int) -> list[CompleteSession]:
        """The `limit` newest sessions with both halves stored and a start at or after `since_ms`.

        Every session's start has an index row at its start time, so once the index has been read
        down to `floor`, every session starting after `floor` is known, whatever its end says (an
        end stamped before its start included). When `limit` of those are complete, no unread
        session can rank above them: the read stops there. Sessions still without an end are the
        only rows read beyond the answer. A player with fewer than SMALL_PARTITION session rows
        is answered from one read of the whole partition instead.
        """
        player = encode_text(player_id)
        if not self._is_heavy(player_id):
            few = await self._db.execute(self._few.bind([player, encode_int(SMALL_PARTITION)]))
            if len(few) < SMALL_PARTITION:  # the whole partition: the answer, as a brute force would find it
                return _newest(_complete(few, since_ms), limit)
            self._remember_heavy(player_id)
        complete: dict[uuid.UUID, CompleteSession] = {}
        page = limit + max(MIN_SLACK, int(limit * FIRST_PAGE_SLACK))
        after: tuple[int, uuid.UUID] | None = None
        while True:
            rows = await self._db.execute(self._index_page(player, since_ms, page, after))
            if rows:
                session_ids = list(dict.fromkeys(session_id for _, session_id in rows))
                complete.update(
                    (session.session_id, session) for session in await self._lookup(player, session_ids, since_ms)
                )
            if len(rows) < page:
                break  # the index holds nothing older in the window: every candidate is known
            floor_ts, floor_id = rows[-1]
            after = (datetime_to_ms(floor_ts), floor_id)
            if sum(1 for session in complete.values() if session.start_ms > after[0]) >= limit:
                break
            page = min(page * PAGE_GROWTH, MAX_PAGE)
        return _newest(complete.values(), limit)

    def _is_heavy(self, player_id: str) -> bool:
        if player_id not in self._heavy:
            return False
        self._heavy.move_to_end(player_id)
        return True

    def _remember_heavy(self, player_id: str) -> None:
        self._heavy[player_id] = None
        if len(self._heavy) > HEAVY_MEMORY:
            self._heavy.popitem(last=False)

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

    async def _lookup(self, player: bytes, session_ids: list[uuid.UUID], since_ms: int) -> list[CompleteSession]:
        """The complete ones among `session_ids`, from their merged rows (start and end as stored)."""
        rows = await self._db.execute(self._sessions.bind([player, encode_uuid_list(session_ids)]))
        return _complete(rows, since_ms)


def _complete(rows: Iterable[tuple[Any, ...]], since_ms: int) -> list[CompleteSession]:
    """The sessions among session rows with both halves stored and a start at or after `since_ms`."""
    sessions = (
        CompleteSession(session_id, country or "", datetime_to_ms(start), datetime_to_ms(end))
        for session_id, start, end, country in rows
        if start is not None and end is not None
    )
    return [session for session in sessions if session.start_ms >= since_ms]


def _newest(sessions: Iterable[CompleteSession], limit: int) -> list[CompleteSession]:
    return sorted(sessions, key=lambda session: (session.start_ms, session.session_id), reverse=True)[:limit]
