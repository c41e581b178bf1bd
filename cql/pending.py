"""Durable marks of rollup periods awaiting a recount, shared by every replica (`rollup_pending`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping

from cassandra.query import BoundStatement, Statement

from cql.batches import batched
from cql.binding import FastBinder, encode_bigint, encode_int, encode_text
from cql.driver import Database, first_error

SHARDS = 64  # partitions the marks are spread over; a round reads them all, concurrently

_MARK = "INSERT INTO {ks}.rollup_pending (shard, level, period, marked_us) VALUES (?, ?, ?, ?) USING TTL ?"
_READ = "SELECT level, period, marked_us FROM {ks}.rollup_pending WHERE shard = ?"
_CLEAR = "DELETE FROM {ks}.rollup_pending USING TIMESTAMP ? WHERE shard = ? AND level = ? AND period = ?"

_STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (query, the column types its bind markers take, in order)
    "mark": (_MARK, ("int", "text", "int", "bigint", "int")),
    "read": (_READ, ("int",)),
    "clear": (_CLEAR, ("bigint", "int", "text", "int")),
}

Pending = dict[str, dict[int, int]]
"""level name -> {period: when it was last marked, epoch µs}"""


def shard_of(period: int) -> int:
    return period % SHARDS


class PendingMarks:
    """Prepared statements over `rollup_pending`: mark, read all, clear."""

    __slots__ = ("_db", "_mark", "_read", "_clear")

    def __init__(self, db: Database, binders: Mapping[str, FastBinder]) -> None:
        self._db = db
        self._mark = binders["mark"].bind
        self._read = binders["read"].bind
        self._clear = binders["clear"].bind

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
        pages = await asyncio.gather(
            *(self._db.execute(self._read([encode_int(shard)])) for shard in range(SHARDS))
        )
        pending: defaultdict[str, dict[int, int]] = defaultdict(dict)
        for rows in pages:
            for level, period, marked_us in rows:
                pending[level][period] = marked_us or 0
        return dict(pending)

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
