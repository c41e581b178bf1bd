"""Rollup rows of session starts per country: recount, write, and read them by period."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import orjson
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement, Statement

from cql.batches import MAX_BATCH_STATEMENTS, batched
from cql.driver import Database, first_error
from daemon.core.levels import Level

COUNT_TIMESTAMP_BASE = 1 << 60
# Rollup rows written together (one partition) stay below Cassandra's 5 KiB batch warning; a row's
# cell grows with its countries, so the bound is on bytes, with ~100 bytes of row overhead each.
MAX_BATCH_BYTES = 4000
ROW_OVERHEAD_BYTES = 100

HourCounts = tuple[int, Mapping[str, int], int]  # (hour, {country: count}, ttl seconds)

_SELECT_MINUTE = "SELECT country FROM {ks}.starts_by_minute WHERE minute = ?"
_SELECT_MINUTE_RANGE = "SELECT country FROM {ks}.starts_by_minute WHERE minute = ? AND ts >= ? AND ts < ?"
_SELECT_MINUTES = "SELECT minute, country FROM {ks}.starts_by_minute WHERE minute IN ?"
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

    __slots__ = (
        "_db",
        "_level",
        "_level_range",
        "_minute",
        "_minute_range",
        "_minutes",
        "_write",
        "_write_hour_starts",
    )

    def __init__(self, db: Database, statements: Mapping[str, PreparedStatement]) -> None:
        self._db = db
        self._minute = statements["minute"]
        self._minute_range = statements["minute_range"]
        self._minutes = statements["minutes"]
        self._level = statements["level"]
        self._level_range = statements["level_range"]
        self._write = statements["write"]
        self._write_hour_starts = statements["write_hour_starts"]

    @classmethod
    async def prepare(cls, db: Database) -> RollupStore:
        queries = {
            "minute": _SELECT_MINUTE,
            "minute_range": _SELECT_MINUTE_RANGE,
            "minutes": _SELECT_MINUTES,
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

    async def count_minutes(self, minutes: list[int]) -> dict[int, Counter[str]]:
        """Starts per country of each of `minutes` (whole minutes, from the raw rows): one request."""
        counts: dict[int, Counter[str]] = {minute: Counter() for minute in minutes}
        for minute, country in await self._db.execute(self._minutes, (minutes,)):
            counts[minute][country] += 1
        return counts

    async def period_rows(self, level: Level, bucket: int, first: int, last: int) -> list[tuple[int, dict[str, int]]]:
        """(period, counts) of the stored rows of periods first..last, all in partition `bucket`."""
        rows = await self._db.execute(self._level_range, (level.name, bucket, first, last))
        return [(period, orjson.loads(counts)) for period, counts in rows if counts]

    async def write(self, level: Level, period: int, counts: Mapping[str, int], ttl: int) -> None:
        """Replace a period's whole counts; of competing recounts, the most complete wins (`count_timestamp`)."""
        bucket = level.bucket_of(period)
        written_at = count_timestamp(sum(counts.values()))
        await self._db.execute(self._write, (written_at, ttl, encode_counts(counts), level.name, bucket, period))

    async def write_many(self, level: Level, rows: Mapping[int, tuple[Mapping[str, int], int]]) -> None:
        """Replace the counts of several periods of one partition ({period: (counts, ttl)}), as `write`
        does one, in unlogged batches bounded by bytes: a few requests instead of one per period."""
        statements: list[Statement] = []
        batch: list[Statement] = []
        size = 0
        for period, (counts, ttl) in rows.items():
            cell = encode_counts(counts)
            written_at = count_timestamp(sum(counts.values()))
            bound = self._write.bind((written_at, ttl, cell, level.name, level.bucket_of(period), period))
            if batch and (size + len(cell) > MAX_BATCH_BYTES or len(batch) == MAX_BATCH_STATEMENTS):
                statements.append(_unlogged(batch))
                batch, size = [], 0
            batch.append(bound)
            size += len(cell) + ROW_OVERHEAD_BYTES
        if batch:
            statements.append(_unlogged(batch))
        error = first_error(await self._db.execute_many(statements, concurrency=2))
        if error is not None:
            raise error

    async def write_hour_starts(self, hours: Sequence[HourCounts], concurrency: int) -> None:
        """Copy hours' counts into each country's hour index rows, for the listing to plan with: a
        country's rows (one partition) go together in unlogged batches, not one write per country and hour."""
        by_country: defaultdict[str, list[BoundStatement]] = defaultdict(list)
        for hour, counts, ttl in hours:
            for country, count in counts.items():
                by_country[country].append(
                    self._write_hour_starts.bind((count_timestamp(count), ttl, count, country, hour))
                )
        statements = [statement for group in by_country.values() for statement in batched(group)]
        error = first_error(await self._db.execute_many(statements, concurrency))
        if error is not None:
            raise error

    async def sum_partition(self, level: Level, bucket: int) -> Counter[str]:
        """The sum of every row of one rollup partition: the recount of the next coarser period."""
        total: Counter[str] = Counter()
        for _, counts in await self._db.execute(self._level, (level.name, bucket)):
            if counts:
                total.update(orjson.loads(counts))
        return total


def _unlogged(statements: list[Statement]) -> Statement:
    if len(statements) == 1:
        return statements[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for statement in statements:
        batch.add(statement)
    batch.is_idempotent = True
    return batch


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
