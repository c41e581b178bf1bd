"""Durable marks of rollup periods awaiting a recount, shared by every replica (`rollup_marks`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping

from cassandra.query import BoundStatement, Statement

from cql.batches import batched
from cql.binding import FastBinder, encode_bigint, encode_int, encode_text
from cql.driver import Database, first_error

# Periods of each level per partition: a year, so any window's marks of a level sit in one or two
# partitions and an exact answer reads at most eight. A partition is written only while its year
# receives starts; after a year-long backfill it holds up to ~527,000 minute marks (~20 MB) until
# they are recounted, and readers of a window scan only the window's slice of it.
PERIODS_PER_PARTITION = {"minute": 366 * 24 * 60, "hour": 366 * 24, "day": 366, "month": 12}

_MARK = "INSERT INTO {ks}.rollup_marks (level, bucket, period, marked_us) VALUES (?, ?, ?, ?) USING TTL ?"
_READ_ALL = "SELECT level, period, marked_us FROM {ks}.rollup_marks"
_READ_RANGE = (
    "SELECT period FROM {ks}.rollup_marks WHERE level = ? AND bucket = ? AND period >= ? AND period <= ? LIMIT ?"
)
_COUNT_RANGE = "SELECT COUNT(*) FROM {ks}.rollup_marks WHERE level = ? AND bucket = ? AND period >= ? AND period <= ?"
_CLEAR = "DELETE FROM {ks}.rollup_marks USING TIMESTAMP ? WHERE level = ? AND bucket = ? AND period = ?"
# Marks of keyspaces applied before `rollup_marks` existed (schema version 4 and older).
_LEGACY_READ_ALL = "SELECT level, period, marked_us, TTL(marked_us) FROM {ks}.rollup_pending"
LEGACY_TABLE = "rollup_pending"

_STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "mark": (_MARK, ("text", "int", "int", "bigint", "int")),
    "clear": (_CLEAR, ("bigint", "text", "int", "int")),
    "read_range": (_READ_RANGE, ("text", "int", "int", "int", "int")),
    "count_range": (_COUNT_RANGE, ("text", "int", "int", "int")),
}

Pending = dict[str, dict[int, int]]
"""level name -> {period: when it was last marked, epoch µs}"""


def bucket_of(level: str, period: int) -> int:
    """The partition (with `level`) holding a period's mark."""
    return period // PERIODS_PER_PARTITION[level]


def bucket_ranges(level: str, first: int, last: int) -> list[tuple[int, int, int]]:
    """(bucket, first, last) of each partition holding marks of periods first..last, oldest first."""
    span = PERIODS_PER_PARTITION[level]
    return [
        (bucket, max(first, bucket * span), min(last, bucket * span + span - 1))
        for bucket in range(bucket_of(level, first), bucket_of(level, last) + 1)
    ]


class PendingMarks:
    """Prepared statements over `rollup_marks`: mark, read, count, clear."""

    __slots__ = ("_clear", "_count_range", "_db", "_mark", "_read_range")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._mark = binders["mark"].bind
        self._clear = binders["clear"].bind
        self._read_range = binders["read_range"].bind
        self._count_range = binders["count_range"].bind

    @classmethod
    async def prepare(cls, db: Database) -> PendingMarks:
        binders = {}
        for name, (query, types) in _STATEMENTS.items():
            prepared = await db.prepare(query.format(ks=db.keyspace))
            prepared.is_idempotent = True
            binders[name] = FastBinder(prepared, types)
        return cls(db, binders)

    def mark_statements(self, level: str, periods: Mapping[int, int], marked_us: int) -> list[Statement]:
        """Statements marking `periods` ({period: ttl seconds}) of `level`, batched per partition."""
        by_bucket: defaultdict[int, list[BoundStatement]] = defaultdict(list)
        name, marked = encode_text(level), encode_bigint(marked_us)
        for period, ttl in periods.items():
            bucket = bucket_of(level, period)
            by_bucket[bucket].append(
                self._mark([name, encode_int(bucket), encode_int(period), marked, encode_int(ttl)])
            )
        return [statement for group in by_bucket.values() for statement in batched(group)]

    async def mark(self, level: str, periods: Mapping[int, int], marked_us: int, concurrency: int) -> None:
        await self._run(self.mark_statements(level, periods, marked_us), concurrency)

    async def read(self) -> Pending:
        """Every mark: the whole (small) table, page by page."""
        pending: defaultdict[str, dict[int, int]] = defaultdict(dict)
        for level, period, marked_us in await self._db.execute(_READ_ALL.format(ks=self._db.keyspace)):
            pending[level][period] = marked_us or 0
        return dict(pending)

    async def read_range(self, level: str, first: int, last: int, limit: int) -> list[int]:
        """The marked periods of `level` among first..last, at most `limit` of them: a request per partition."""
        name, most = encode_text(level), encode_int(limit)
        pages = await asyncio.gather(
            *(
                self._db.execute(self._read_range([name, encode_int(bucket), encode_int(low), encode_int(high), most]))
                for bucket, low, high in bucket_ranges(level, first, last)
            )
        )
        return [period for rows in pages for (period,) in rows][:limit]

    async def count_range(self, level: str, first: int, last: int) -> int:
        """How many periods of `level` among first..last are marked, counted by Cassandra partition by partition."""
        name = encode_text(level)
        pages = await asyncio.gather(
            *(
                self._db.execute(self._count_range([name, encode_int(bucket), encode_int(low), encode_int(high)]))
                for bucket, low, high in bucket_ranges(level, first, last)
            )
        )
        return sum(int(rows[0][0]) for rows in pages if rows)

    async def clear(self, level: str, periods: Iterable[int], before_us: int, concurrency: int) -> None:
        """Delete the marks of `periods` written at or before `before_us`; later marks survive."""
        by_bucket: defaultdict[int, list[BoundStatement]] = defaultdict(list)
        name, before = encode_text(level), encode_bigint(before_us)
        for period in periods:
            bucket = bucket_of(level, period)
            by_bucket[bucket].append(self._clear([before, name, encode_int(bucket), encode_int(period)]))
        await self._run([statement for group in by_bucket.values() for statement in batched(group)], concurrency)

    async def _run(self, statements: list[Statement], concurrency: int) -> None:
        error = first_error(await self._db.execute_many(statements, concurrency))
        if error is not None:
            raise error


async def copy_legacy_marks(db: Database, keyspace: str) -> int:
    """Mark again in `rollup_marks` every mark of the old `rollup_pending` table; returns how many.

    Idempotent: a mark copied twice costs at most one more recount. The old table is left in place
    for replicas of an older version still running; apply the schema again once they are replaced.
    """
    rows = await db.execute(_LEGACY_READ_ALL.format(ks=keyspace))
    prepared = await db.prepare(_MARK.format(ks=keyspace))
    prepared.is_idempotent = True
    statements = [
        prepared.bind((level, bucket_of(level, period), period, marked_us or 0, ttl or 0))
        for level, period, marked_us, ttl in rows
        if level in PERIODS_PER_PARTITION
    ]
    error = first_error(await db.execute_many(statements, concurrency=16))
    if error is not None:
        raise error
    return len(statements)
