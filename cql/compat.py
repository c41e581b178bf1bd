"""The shared position of GET /add/<n> in its file, advanced atomically across daemon replicas."""

from __future__ import annotations

from cql.driver import Database

_READ = "SELECT next_line FROM {ks}.compat_cursor WHERE name = %s"
_ADVANCE_FIRST = "INSERT INTO {ks}.compat_cursor (name, next_line) VALUES (%s, %s) IF NOT EXISTS"
_ADVANCE = "UPDATE {ks}.compat_cursor SET next_line = %s WHERE name = %s IF next_line = %s"


class LineCursor:
    """Where the next unclaimed line of one named file is, moved on with compare-and-set (Paxos).

    A request reads the position, stores the lines from there, and only then advances it: lines
    are never skipped by a request that failed to store them. Two replicas that read the same
    position both store the same lines (idempotent upserts: the same rows) and only one advance
    wins; the other reads the new position and goes on from there.
    """

    __slots__ = ("_db", "_name", "_known")

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self._name = name
        self._known: int | None = None  # our last view of next_line; None = not read yet

    async def position(self) -> int:
        """The first line not yet handed out, as last seen (a stale view only makes `advance` fail)."""
        if self._known is None:
            rows = await self._db.execute(_READ.format(ks=self._db.keyspace), (self._name,))
            self._known = rows[0][0] if rows and rows[0][0] is not None else 0
        return self._known

    async def advance(self, start: int, count: int) -> bool:
        """Move the position from `start` to `start + count`; False if another replica moved it first."""
        if count == 0:
            return True
        ks = self._db.keyspace
        if start == 0:
            row = (await self._db.execute(_ADVANCE_FIRST.format(ks=ks), (self._name, count)))[0]
        else:
            row = (await self._db.execute(_ADVANCE.format(ks=ks), (start + count, self._name, start)))[0]
        if row[0]:
            self._known = start + count
            return True
        self._known = row[-1]  # a failed compare-and-set returns the current value
        return False
