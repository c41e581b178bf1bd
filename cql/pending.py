"""Durable marks of rollup periods awaiting a recount, shared by every replica (`rollup_pending`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping

from cassandra.query import BoundStatement, Statement

from cql.batches import batched
from cql.binding import FastBinder, encode_bigint, encode_int, encode_int_list, encode_text
from cql.driver import Database, first_error

SHARDS = 64  # partitions the marks are spread over; a round reads them all, concurrently

_MARK = "INSERT INTO {ks}.rollup_pending (shard, level, period, marked_us) VALUES (?, ?, ?, ?) USING TTL ?"
_READ = "SELECT level, period, marked_us FROM {ks}.rollup_pending WHERE shard = ?"
# The marks of one level inside a range of periods, from the shards that can hold them.
_READ_RANGE = (
    "SELECT period FROM {ks}.rollup_pending WHERE shard IN ? AND level = ? AND period >= ? AND period <= ? LIMIT ?"
)
# Per shard: an aggregate over an IN of partitions draws a server warning on every request.
_COUNT_RANGE = "SELECT COUNT(*) FROM {ks}.rollup_pending WHERE shard = ? AND level = ? AND period >= ? AND period <= ?"
_CLEAR = "DELETE FROM {ks}.rollup_pending USING TIMESTAMP ? WHERE shard = ? AND level = ? AND period = ?"

_STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "mark": (_MARK, ("int", "text", "int", "bigint", "int")),
    "read": (_READ, ("int",)),
    "clear": (_CLEAR, ("bigint", "int", "text", "int")),
    "read_range": (_READ_RANGE, ("list<int>", "text", "int", "int", "int")),
    "count_range": (_COUNT_RANGE, ("int", "text", "int", "int")),
}

Pending = dict[str, dict[int, int]]
"""level name -> {period: when it was last marked, epoch µs}"""


def shard_of(period: int) -> int:
    return period % SHARDS


def shards_of(first: int, last: int) -> list[int]:
    """The shards holding the marks of periods first..last."""
    if last - first + 1 >= SHARDS:
        return list(range(SHARDS))
    return sorted({shard_of(period) for period in range(first, last + 1)})


class PendingMarks:
    """Prepared statements over `rollup_pending`: mark, read all, clear."""

    __slots__ = ("_clear", "_count_range", "_db", "_mark", "_read", "_read_range")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._mark = binders["mark"].bind
        self._read = binders["read"].bind
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
        """Statements marking `periods` ({period: ttl seconds}) of `level`, batched per shard."""
        by_shard: defaultdict[int, list[BoundStatement]] = defaultdict(list)
        name, marked = encode_text(level), encode_bigint(marked_us)
        for period, ttl in periods.items():
            shard = shard_of(period)
            by_shard[shard].append(self._mark([encode_int(shard), name, encode_int(period), marked, encode_int(ttl)]))
        return [statement for group in by_shard.values() for statement in batched(group)]

    async def mark(self, level: str, periods: Mapping[int, int], marked_us: int, concurrency: int) -> None:
        await self._run(self.mark_statements(level, periods, marked_us), concurrency)

    async def read(self) -> Pending:
        """Every mark, from all shards at once."""
        pages = await asyncio.gather(*(self._db.execute(self._read([encode_int(shard)])) for shard in range(SHARDS)))
        pending: defaultdict[str, dict[int, int]] = defaultdict(dict)
        for rows in pages:
            for level, period, marked_us in rows:
                pending[level][period] = marked_us or 0
        return dict(pending)

    async def read_range(self, level: str, first: int, last: int, limit: int) -> list[int]:
        """The marked periods of `level` among first..last, at most `limit` of them: one request."""
        params = self._range_params(level, first, last)
        rows = await self._db.execute(self._read_range([*params, encode_int(limit)]))
        return [period for (period,) in rows]

    async def count_range(self, level: str, first: int, last: int) -> int:
        """How many periods of `level` among first..last are marked, counted by Cassandra shard by shard."""
        name, bounds = encode_text(level), (encode_int(first), encode_int(last))
        pages = await asyncio.gather(
            *(
                self._db.execute(self._count_range([encode_int(shard), name, *bounds]))
                for shard in shards_of(first, last)
            )
        )
        return sum(int(rows[0][0]) for rows in pages if rows)

    @staticmethod
    def _range_params(level: str, first: int, last: int) -> list[bytes]:
        return [encode_int_list(shards_of(first, last)), encode_text(level), encode_int(first), encode_int(last)]

    async def clear(self, level: str, periods: Iterable[int], before_us: int, concurrency: int) -> None:
        """Delete the marks of `periods` written at or before `before_us`; later marks survive."""
        by_shard: defaultdict[int, list[BoundStatement]] = defaultdict(list)
        name, before = encode_text(level), encode_bigint(before_us)
        for period in periods:
            shard = shard_of(period)
            by_shard[shard].append(self._clear([before, encode_int(shard), name, encode_int(period)]))
        await self._run([statement for group in by_shard.values() for statement in batched(group)], concurrency)

    async def _run(self, statements: list[Statement], concurrency: int) -> None:
        error = first_error(await self._db.execute_many(statements, concurrency))
        if error is not None:
            raise error
