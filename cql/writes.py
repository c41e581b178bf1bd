"""Turns accepted events into idempotent CQL writes: partitions' rows in unlogged batches (`cql.grouping`)."""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Iterable

from cassandra.query import BoundStatement, Statement

from cql.binding import FastBinder, encode_int, encode_text, encode_timestamp, encode_uuid
from cql.driver import Database
from cql.grouping import Grouping
from cql.layout import LEGACY_HOURS, partition_hours
from cql.pending import PendingMarks
from daemon.core.events import Event
from daemon.core.instants import MS_PER_HOUR, MS_PER_MINUTE
from daemon.core.levels import MINUTE
from daemon.core.timebuckets import partition_hour

_UPSERT_START = """
UPDATE {ks}.sessions_by_player USING TTL ? SET start_ts = ?, country = ?
WHERE player_id = ? AND session_id = ?"""
_UPSERT_END = """
UPDATE {ks}.sessions_by_player USING TTL ? SET end_ts = ?
WHERE player_id = ? AND session_id = ?"""
# The start's row in the player's time-ordered index: same partition key as its session row, so
# both join the player's batch, which Cassandra applies as one mutation per key (no extra request).
_INSERT_PLAYER_START = """
INSERT INTO {ks}.player_starts (player_id, start_ts, session_id) VALUES (?, ?, ?) USING TTL ?"""
_INSERT_COUNTRY_START = """
INSERT INTO {ks}.country_starts (country, hour_desc, ts, session_id, player_id)
VALUES (?, ?, ?, ?, ?) USING TTL ?"""
_INSERT_MINUTE_START = """
INSERT INTO {ks}.starts_by_minute (minute, ts, session_id, country)
VALUES (?, ?, ?, ?) USING TTL ?"""
_INSERT_START_HOUR = """
INSERT INTO {ks}.start_hours_by_country (country, hour) VALUES (?, ?) USING TTL ?"""


_STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "upsert_start": (_UPSERT_START, ("int", "timestamp", "text", "text", "uuid")),
    "upsert_end": (_UPSERT_END, ("int", "timestamp", "text", "uuid")),
    "insert_player_start": (_INSERT_PLAYER_START, ("text", "timestamp", "uuid", "int")),
    "insert_country_start": (_INSERT_COUNTRY_START, ("text", "int", "timestamp", "uuid", "text", "int")),
    "insert_minute_start": (_INSERT_MINUTE_START, ("int", "timestamp", "uuid", "text", "int")),
    "insert_start_hour": (_INSERT_START_HOUR, ("text", "int", "int")),
}


class EventWriter:
    """Prepared statements for storing events, and the grouping of a flush into per-partition writes."""

    __slots__ = ("_binders", "_known_hours", "_pending", "grouping", "partition_hours")

    def __init__(
        self, binders: dict[str, FastBinder], pending: PendingMarks, grouping: Grouping, span: int = LEGACY_HOURS
    ) -> None:
        self._binders = binders
        self._pending = pending
        self.grouping = grouping
        self.partition_hours = span  # hours per country_starts partition, as the keyspace records it
        # (country, hour) index rows this process already wrote durably; rewriting one is
        # harmless (idempotent), so the cache only saves writes and may forget freely.
        self._known_hours: OrderedDict[tuple[str, int], None] = OrderedDict()

    @classmethod
    async def prepare(cls, db: Database, grouping: Grouping | None = None) -> EventWriter:
        """The writer's statements prepared on `db`; one partition per batch unless `grouping` says otherwise."""
        binders = {}
        for name, (query, types) in _STATEMENTS.items():
            prepared = await db.prepare(query.format(ks=db.keyspace))
            prepared.is_idempotent = True  # every write is an upsert, so the driver may retry it
            binders[name] = FastBinder(prepared, types)
        pending = await PendingMarks.prepare(db)
        return cls(binders, pending, grouping or Grouping.per_partition(), await partition_hours(db))

    def statements_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Statement]:
        """The writes for `events`: partitions' rows in unlogged batches, as the writer's grouping packs them.

        `expiry_ms` is the retention span: a row lives until its event time plus that span, as
        seen by the service clock at `now_ms`.
        """
        return self.grouping.statements(self.rows_by_partition(events, expiry_ms, now_ms))

    def partition_groups(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[list[BoundStatement]]:
        """The rows to write for `events`, one list per Cassandra partition."""
        return list(self.rows_by_partition(events, expiry_ms, now_ms).values())

    def rows_by_partition(
        self, events: Iterable[Event], expiry_ms: int, now_ms: int
    ) -> dict[Hashable, list[BoundStatement]]:
        """The rows to write for `events` by partition key; a player's key is its id (the only str key)."""
        upsert_start = self._binders["upsert_start"].bind
        upsert_end = self._binders["upsert_end"].bind
        insert_player_start = self._binders["insert_player_start"].bind
        insert_country_start = self._binders["insert_country_start"].bind
        insert_minute_start = self._binders["insert_minute_start"].bind
        # Partition keys by their shape: player (str; its session rows and its start index share the
        # key), country span (str, its first hour), minute (int), hour index ("hours", str). The
        # shapes never collide, so no tag is needed.
        span = self.partition_hours
        groups: defaultdict[Hashable, list[BoundStatement]] = defaultdict(list)
        new_hours: set[tuple[str, int]] = set()
        for event in events:
            ttl = encode_int(max(1, (event.ts_ms + expiry_ms - now_ms) // 1000))
            ts = encode_timestamp(event.ts_ms)
            player = encode_text(event.player_id)
            session = encode_uuid(event.session_id)
            if event.country is None:
                groups[event.player_id].append(upsert_end([ttl, ts, player, session]))
                continue
            country = encode_text(event.country)
            hour = event.ts_ms // MS_PER_HOUR
            minute = event.ts_ms // MS_PER_MINUTE
            player_rows = groups[event.player_id]
            player_rows.append(upsert_start([ttl, ts, country, player, session]))
            player_rows.append(insert_player_start([player, ts, session, ttl]))
            first_hour = partition_hour(hour, span)
            groups[(event.country, first_hour)].append(
                insert_country_start([country, encode_int(-first_hour), ts, session, player, ttl])
            )
            groups[minute].append(insert_minute_start([encode_int(minute), ts, session, country, ttl]))
            if (event.country, hour) not in self._known_hours:
                new_hours.add((event.country, hour))
        insert_start_hour = self._binders["insert_start_hour"].bind
        for country_code, hour in new_hours:
            # The index row must outlive every start of its hour, so it expires with the hour's end.
            hour_ttl = max(1, ((hour + 1) * MS_PER_HOUR + expiry_ms - now_ms) // 1000)
            groups[("hours", country_code)].append(
                insert_start_hour([encode_text(country_code), encode_int(hour), encode_int(hour_ttl)])
            )
        return groups

    def pending_marks_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Statement]:
        """Durable marks of the minutes `events` started in, for the rollup refresher of any replica.

        Written only once the events' rows are acknowledged and before the request is, so a mark
        never points at rows a recount could miss, and no acknowledged start goes unmarked.
        """
        minutes: dict[int, int] = {}
        for event in events:
            if event.country is not None:
                minute = event.ts_ms // MS_PER_MINUTE
                minutes[minute] = max(1, ((minute + 1) * MS_PER_MINUTE + expiry_ms - now_ms) // 1000)
        return self._pending.mark_statements(MINUTE.name, minutes, time.time_ns() // 1_000)

    def remember_hours(self, events: Iterable[Event], limit: int = 100_000) -> None:
        """Record index rows written durably, so later flushes skip them."""
        for event in events:
            if event.country is not None:
                self._known_hours[(event.country, event.ts_ms // MS_PER_HOUR)] = None
        while len(self._known_hours) > limit:
            self._known_hours.popitem(last=False)
