"""Turns accepted events into idempotent CQL writes: one unlogged batch per Cassandra partition."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Iterable, Sequence

from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement, Statement

from cql.driver import Database
from daemon.events import MS_PER_HOUR, MS_PER_MINUTE, Event

# Cassandra warns above 5 KiB per batch and fails above 50 KiB (batch_size_*_threshold). A
# session row mutation is ~100 bytes, so 40 statements stay under the warning.
MAX_BATCH_STATEMENTS = 40

_UPSERT_START = """
UPDATE {ks}.sessions_by_player USING TTL ? SET start_ts = ?, country = ?
WHERE player_id = ? AND session_id = ?"""
_UPSERT_END = """
UPDATE {ks}.sessions_by_player USING TTL ? SET end_ts = ?
WHERE player_id = ? AND session_id = ?"""
_INSERT_COUNTRY_START = """
INSERT INTO {ks}.starts_by_country (country, hour, ts, session_id, player_id)
VALUES (?, ?, ?, ?, ?) USING TTL ?"""
_INSERT_MINUTE_START = """
INSERT INTO {ks}.starts_by_minute (minute, ts, session_id, country)
VALUES (?, ?, ?, ?) USING TTL ?"""
_INSERT_START_HOUR = """
INSERT INTO {ks}.start_hours_by_country (country, hour) VALUES (?, ?) USING TTL ?"""


class EventWriter:
    """Prepared statements for storing events, and the grouping of a flush into per-partition writes."""

    __slots__ = (
        "_upsert_start",
        "_upsert_end",
        "_insert_country_start",
        "_insert_minute_start",
        "_insert_start_hour",
        "_known_hours",
    )

    def __init__(
        self,
        upsert_start: PreparedStatement,
        upsert_end: PreparedStatement,
        insert_country_start: PreparedStatement,
        insert_minute_start: PreparedStatement,
        insert_start_hour: PreparedStatement,
    ) -> None:
        self._upsert_start = upsert_start
        self._upsert_end = upsert_end
        self._insert_country_start = insert_country_start
        self._insert_minute_start = insert_minute_start
        self._insert_start_hour = insert_start_hour
        # (country, hour) index rows this process already wrote durably; rewriting one is
        # harmless (idempotent), so the cache only saves writes and may forget freely.
        self._known_hours: OrderedDict[tuple[str, int], None] = OrderedDict()

    @classmethod
    async def prepare(cls, db: Database) -> EventWriter:
        statements = []
        for query in (_UPSERT_START, _UPSERT_END, _INSERT_COUNTRY_START, _INSERT_MINUTE_START, _INSERT_START_HOUR):
            prepared = await db.prepare(query.format(ks=db.keyspace))
            prepared.is_idempotent = True  # every write is an upsert, so the driver may retry it
            statements.append(prepared)
        return cls(*statements)

    def statements_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Statement]:
        """The writes for `events`, grouped so each statement touches exactly one partition.

        `expiry_ms` is the retention span: a row lives until its event time plus that span, as
        seen by the service clock at `now_ms`.
        """
        groups: defaultdict[Hashable, list[BoundStatement]] = defaultdict(list)
        new_hours: set[tuple[str, int]] = set()
        for event in events:
            ttl = max(1, (event.ts_ms + expiry_ms - now_ms) // 1000)
            if event.country is not None:
                hour = event.ts_ms // MS_PER_HOUR
                groups[("player", event.player_id)].append(
                    self._upsert_start.bind((ttl, event.ts_ms, event.country, event.player_id, event.session_id))
                )
                groups[("country", event.country, hour)].append(
                    self._insert_country_start.bind(
                        (event.country, hour, event.ts_ms, event.session_id, event.player_id, ttl)
                    )
                )
                minute = event.ts_ms // MS_PER_MINUTE
                groups[("minute", minute)].append(
                    self._insert_minute_start.bind((minute, event.ts_ms, event.session_id, event.country, ttl))
                )
                if (event.country, hour) not in self._known_hours:
                    new_hours.add((event.country, hour))
            else:
                groups[("player", event.player_id)].append(
                    self._upsert_end.bind((ttl, event.ts_ms, event.player_id, event.session_id))
                )
        for country, hour in new_hours:
            # The index row must outlive every start of its hour, so it expires with the hour's end.
            hour_ttl = max(1, ((hour + 1) * MS_PER_HOUR + expiry_ms - now_ms) // 1000)
            groups[("hours", country)].append(self._insert_start_hour.bind((country, hour, hour_ttl)))
        return [statement for group in groups.values() for statement in _batched(group)]

    def remember_hours(self, events: Iterable[Event], limit: int = 100_000) -> None:
        """Record index rows written durably, so later flushes skip them."""
        for event in events:
            if event.country is not None:
                self._known_hours[(event.country, event.ts_ms // MS_PER_HOUR)] = None
        while len(self._known_hours) > limit:
            self._known_hours.popitem(last=False)


def _batched(group: Sequence[BoundStatement]) -> list[Statement]:
    """One statement as is; several (same partition) as unlogged batches of bounded size."""
    if len(group) == 1:
        return [group[0]]
    batches: list[Statement] = []
    for offset in range(0, len(group), MAX_BATCH_STATEMENTS):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for statement in group[offset : offset + MAX_BATCH_STATEMENTS]:
            batch.add(statement)
        batch.is_idempotent = True
        batches.append(batch)
    return batches
