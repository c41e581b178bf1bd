"""Rollup rows of session starts per country: recount, write, and sum them over a time window."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping
from itertools import groupby
from typing import Any

import orjson
from cassandra.query import PreparedStatement

from cql.driver import Database, first_error
from daemon.core.levels import DAY, HOUR, MINUTE, MONTH, Level
from daemon.core.timebuckets import decompose

COUNT_TIMESTAMP_BASE = 1 << 60

_SELECT_MINUTE = "SELECT country FROM {ks}.starts_by_minute WHERE minute = ?"
_SELECT_MINUTE_RANGE = "SELECT country FROM {ks}.starts_by_minute WHERE minute = ? AND ts >= ? AND ts < ?"
_SELECT_LEVEL = "SELECT period, counts FROM {ks}.rollup_counts WHERE level = ? AND bucket = ?"
_SELECT_LEVEL_RANGE = (
    "SELECT period, counts FROM {ks}.rollup_counts WHERE level = ? AND bucket = ? AND period >= ? AND period <= ?"
)
_WRITE_LEVEL = (
    "UPDATE {ks}.rollup_counts USING TIMESTAMP ? AND TTL ? SET counts = ? WHERE level = ? AND bucket = ? AND period = ?"
)
_WRITE_HOUR_STARTS = (
    "UPDATE {ks}.start_hours_by_country USING TIMESTAMP ? AND TTL ? SET starts = ? WHERE country = ? AND hour = ?"
)


class RollupStore:
    """Prepared statements over `rollup_counts` and `starts_by_minute`."""

    __slots__ = ("_db", "_minute", "_minute_range", "_level", "_level_range", "_write", "_write_hour_starts")

    def __init__(self, db: Database, statements: Mapping[str, PreparedStatement]) -> None:
        self._db = db
        self._minute = statements["minute"]
        self._minute_range = statements["minute_range"]
        self._level = statements["level"]
        self._level_range = statements["level_range"]
        self._write = statements["write"]
        self._write_hour_starts = statements["write_hour_starts"]

    @classmethod
    async def prepare(cls, db: Database) -> RollupStore:
        queries = {
            "minute": _SELECT_MINUTE,
            "minute_range": _SELECT_MINUTE_RANGE,
            "level": _SELECT_LEVEL,
            "level_range": _SELECT_LEVEL_RANGE,
            "write": _WRITE_LEVEL,
            "write_hour_starts": _WRITE_HOUR_STARTS,
        }
        prepared = {name: await db.prepare(query.format(ks=db.keyspace)) for name, query in queries.items()}
        prepared["write"].is_idempotent = True
        prepared["write_hour_starts"].is_idempotent = True
        return cls(db, prepared)

    async def count_minute(self, minute: int, start_ms: int | None = None, end_ms: int | None = None) -> Counter[str]:
        """Starts per country in one minute (or the part [start_ms, end_ms) of it), from the raw rows."""
        if start_ms is None or end_ms is None:
            rows = await self._db.execute(self._minute, (minute,))
        else:
            rows = await self._db.execute(self._minute_range, (minute, start_ms, end_ms))
        return Counter(country for (country,) in rows)

    async def sum_partition(self, level: Level, bucket: int) -> Counter[str]:
        """The sum of every row of one rollup partition: the recount of the next coarser period."""
        return await self._sum_rows(self._level, (level.name, bucket))

    async def write(self, level: Level, period: int, counts: Mapping[str, int], ttl: int) -> None:
        """Replace a period's whole counts; of competing recounts, the most complete wins (`count_timestamp`)."""
        bucket = level.bucket_of(period)
        written_at = count_timestamp(sum(counts.values()))
        await self._db.execute(self._write, (written_at, ttl, encode_counts(counts), level.name, bucket, period))

    async def write_hour_starts(self, hour: int, counts: Mapping[str, int], ttl: int, concurrency: int) -> None:
        """Copy an hour's counts into each country's hour index row, for the listing to plan with."""
        statements = [
            self._write_hour_starts.bind((count_timestamp(count), ttl, count, country, hour))
            for country, count in counts.items()
        ]
        error = first_error(await self._db.execute_many(statements, concurrency))
        if error is not None:
            raise error

    async def totals(self, start_ms: int, end_ms: int) -> Counter[str]:
        """Starts per country in [start_ms, end_ms): a few single-partition reads, run concurrently."""
        parts = decompose(start_ms, end_ms)
        reads = [
            *self._level_reads(MONTH, parts.months),
            *self._level_reads(DAY, parts.days),
            *self._level_reads(HOUR, parts.hours),
            *self._level_reads(MINUTE, parts.minutes),
            *(self.count_minute(minute, lo, hi) for minute, lo, hi in parts.partial_minutes),
        ]
        total: Counter[str] = Counter()
        for counts in await asyncio.gather(*reads):
            total.update(counts)
        return total

    def _level_reads(self, level: Level, periods: Iterable[int]) -> list[Coroutine[Any, Any, Counter[str]]]:
        """One range read per partition; `decompose` yields periods contiguous within each partition."""
        reads = []
        for bucket, group in groupby(sorted(periods), key=level.bucket_of):
            members = list(group)
            reads.append(self._sum_range(level, bucket, members[0], members[-1]))
        return reads

    async def _sum_range(self, level: Level, bucket: int, first: int, last: int) -> Counter[str]:
        return await self._sum_rows(self._level_range, (level.name, bucket, first, last))

    async def _sum_rows(self, query: PreparedStatement, params: tuple[Any, ...]) -> Counter[str]:
        """Add up the counts of the (period, counts) rows a rollup query returns."""
        total: Counter[str] = Counter()
        for _, counts in await self._db.execute(query, params):
            if counts:
                total.update(orjson.loads(counts))
        return total


def count_timestamp(total: int) -> int:
    """The write timestamp of a recount whose counts add up to `total`.

    Replicas recount the same period concurrently and their clocks differ, so a wall-clock
    timestamp could let an older, smaller recount win over a newer one. A period's stored starts
    only grow (until the whole period expires), so a later recount never counts fewer: ordering
    recounts by their total makes the most complete one win whatever the clocks. Equal totals
    mean equal counts. The base lifts these far above the wall-clock µs timestamps that rows
    written before this scheme carry (~2^51), so the first recount replaces them.
    """
    return COUNT_TIMESTAMP_BASE + total


def encode_counts(counts: Mapping[str, int]) -> bytes:
    """A rollup row's cell: a JSON object country -> count, without zero counts."""
    return orjson.dumps({country: count for country, count in counts.items() if count})
