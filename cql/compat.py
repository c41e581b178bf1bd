"""The shared position of GET /add/<n> in its file, claimed atomically across daemon replicas."""

from __future__ import annotations

from cql.driver import Database

_CLAIM_FIRST = "INSERT INTO {ks}.compat_cursor (name, next_line) VALUES (%s, %s) IF NOT EXISTS"
_CLAIM_NEXT = "UPDATE {ks}.compat_cursor SET next_line = %s WHERE name = %s IF next_line = %s"


class LineClaims:
    """Hands out disjoint line ranges of one named file with compare-and-set (Paxos) updates."""

    __slots__ = ("_db", "_name", "_expected")

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self._name = name
        self._expected: int | None = None  # our last view of next_line; None = not read yet

    async def claim(self, count: int) -> int:
        """Reserve `count` lines; returns the first line number of the reservation."""
        ks = self._db.keyspace
        while True:
            if self._expected is None:
                row = (await self._db.execute(_CLAIM_FIRST.format(ks=ks), (self._name, count)))[0]
                if row[0]:
                    self._expected = count
                    return 0
            else:
                start = self._expected
                query = _CLAIM_NEXT.format(ks=ks)
                row = (await self._db.execute(query, (start + count, self._name, start)))[0]
                if row[0]:
                    self._expected = start + count
                    return start
            self._expected = row[-1]  # a failed compare-and-set returns the current value
