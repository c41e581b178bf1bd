"""The durable side of the refresher's work list: adopting pending marks and clearing them once recounted."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from cql.pending import PendingMarks
from daemon.core.levels import LEVELS, Level

log = logging.getLogger(__name__)

US_PER_SECOND = 1_000_000
# A mark is cleared with a timestamp this much earlier than the round's start, so a mark written
# by a replica whose clock runs behind, just before the round read its rows, survives the clear
# (and costs one more, idempotent, recount). Larger than any sane NTP skew.
CLOCK_SKEW_MARGIN_US = 2 * US_PER_SECOND
CLEARED_MEMORY = 100_000  # recently cleared periods remembered (a few MB at most)


def now_us() -> int:
    """Wall-clock µs, the unit of Cassandra's write timestamps (not the service clock: that may be frozen)."""
    return time.time_ns() // 1_000


class PendingLedger:
    """Which of the refresher's dirty periods carry a durable mark in `rollup_marks`.

    Each round first adopts marks: those of periods this replica already has dirty (its own
    starts), and those older than `adopt_after` seconds, whose replica probably died before it
    recounted them. After a level's recounts, the parents they made stale are marked durably,
    and only then are the recounted periods' marks cleared, so a crash at any point leaves every
    stale period marked. Without marks (a fake store in unit tests), it does nothing.
    """

    __slots__ = ("_marks", "_adopt_after_us", "_concurrency", "_durable", "_cleared")

    def __init__(self, marks: PendingMarks | None, adopt_after: float, concurrency: int) -> None:
        self._marks = marks
        self._adopt_after_us = int(adopt_after * US_PER_SECOND)
        self._concurrency = concurrency
        self._durable: dict[str, set[int]] = {level.name: set() for level in LEVELS}
        # (level, period) -> the timestamp its marks were cleared up to: a mark found later than that
        # (written during the skew margin, or for new starts) is this replica's own work, taken at once.
        self._cleared: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def adopt(self, dirty: Mapping[str, set[int]], round_us: int) -> int:
        """Add the marks this replica should recount to `dirty`; returns how many orphans it took over."""
        if self._marks is None:
            return 0
        try:
            marks = await self._marks.read()
        except Exception as exc:  # Cassandra unavailable: this round works from memory only
            log.warning("rollups: cannot read pending marks (%s); recounting from memory only", exc)
            return 0
        orphans = 0
        for level in LEVELS:
            mine, durable = dirty[level.name], self._durable[level.name]
            for period, marked_us in marks.get(level.name, {}).items():
                if period in mine or marked_us > self._cleared.get((level.name, period), marked_us):
                    mine.add(period)
                    durable.add(period)
                elif marked_us <= round_us - self._adopt_after_us:
                    mine.add(period)
                    durable.add(period)
                    orphans += 1
        if orphans:
            adopt_after = self._adopt_after_us / US_PER_SECOND
            log.info("rollups: adopted %d pending periods marked more than %.0fs ago", orphans, adopt_after)
        return orphans

    async def settle(self, level: Level, recounted: Iterable[int], parents: Mapping[int, int], round_us: int) -> None:
        """Mark the stale `parents` ({period: ttl}) of a level's recounts, then clear the recounted marks.

        A failure leaves the marks in place: the periods are recounted again later (idempotent).
        """
        if self._marks is None:
            return
        durable = self._durable[level.name]
        cleared = [period for period in recounted if period in durable]
        try:
            if parents and level.parent is not None:
                await self._marks.mark(level.parent.name, parents, now_us(), self._concurrency)
                self._durable[level.parent.name].update(parents)
            before_us = round_us - CLOCK_SKEW_MARGIN_US
            if cleared:
                await self._marks.clear(level.name, cleared, before_us, self._concurrency)
        except Exception as exc:
            log.warning("rollups: marks of %d %ss left (%s); recounted again later", len(cleared), level.name, exc)
            return
        durable.difference_update(cleared)
        for period in cleared:
            self._cleared[(level.name, period)] = before_us
            self._cleared.move_to_end((level.name, period))
        while len(self._cleared) > CLEARED_MEMORY:
            self._cleared.popitem(last=False)
