"""Start counts per country over windows that include every acknowledged start: rollups where settled, raw rows where not.

Why the answer is exact (every start acknowledged before the request is counted):

1. Ingest writes a start's rows, then the durable mark of its minute, then acknowledges
   (cql/writes.py `pending_marks_for`). So a start acknowledged before this request either has its
   minute's mark in `rollup_marks`, or the mark was cleared.
2. The refresher (daemon/rollups) clears a period's mark only after it wrote a recount of the
   period and durably marked the parent period, and with a timestamp 2 s before its round began:
   a mark it clears was written before its recount read, so the recount saw the start's rows (or
   the child rows summing them). Rollup rows are written with `count_timestamp` (the recount's
   total): a period's stored starts only grow, so a later, larger recount replaces a smaller one
   and never the reverse; once a recount holding the start is stored, every read sees one holding it.
   So for a start S in minute m of hour h, day d, month M: while m is marked, the minute rollup may
   lack S; once m's mark is gone, the minute rollup holds S and h is (or was) marked; once h's mark
   is gone, the hour rollup holds S and d is (or was) marked; and so on up.
3. Reading all marks at once is not a snapshot: the 64 shards are read at different instants, so a
   chain moving up (h marked, then m cleared) could hide between a read of h's shard before the mark
   and a read of m's shard after the clear. So marks are read level by level, finest first, each
   level's read starting only once the finer one has returned: if m's read saw no mark, h's mark was
   written before that read returned, so h's later read sees it, or its clear (and then the hour
   rollup holds S and d's mark is visible to the next read), and so on. Rollups are read last.
4. A window is cut into whole months, days, hours and minutes (`decompose`). A period is read from
   its rollup only when neither it nor any period inside it carried a mark at its level's read;
   otherwise it is split into its children, down to minutes, and a marked minute is counted from
   `starts_by_minute` (as its recount would be). Partial minutes at the edges always are.

When more minutes are marked inside the window than `max_direct_minutes` (a long window right
after a long backfill), or the split would take more than MAX_READS requests, an exact answer
would cost too much: it then comes from the rollups as they are, and says how many periods await
a recount (`pending_periods`, counted by Cassandra when there are too many to read).

Known limit: on a multi-node cluster a recount racing writes still in flight can, rarely, read a
set that lacks an acknowledged start yet has a larger total; the in-flight writes' own marks land
a moment later and make the minute pending again, so such an answer is wrong only for that moment.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from cql.pending import PendingMarks
from cql.rollups import RollupStore
from daemon.core.levels import DAY, HOUR, LEVELS, MINUTE, MONTH, Level, ancestors, children, finer
from daemon.core.timebuckets import decompose

MAX_READS = 2_000  # requests an exact answer may take; beyond, it comes from the rollups as they are
Window = tuple[int, int]  # [start_ms, end_ms)
Tagged = dict[int, int]  # period -> index of the window it counts for


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Starts per country of each window asked for, in order; `pending_periods` 0 = exact."""

    counts: list[Counter[str]]
    pending_periods: int

    @property
    def settled(self) -> bool:
        return self.pending_periods == 0


class _Plan:
    """What to read for a set of windows: rollup periods per level and minutes counted from raw rows."""

    __slots__ = ("direct", "partial", "periods")

    def __init__(self, windows: Sequence[Window]) -> None:
        self.periods: dict[str, Tagged] = {level.name: {} for level in LEVELS}
        self.direct: Tagged = {}  # whole minutes counted from starts_by_minute
        self.partial: list[tuple[int, int, int, int]] = []  # (minute, start_ms, end_ms, window)
        for index, (start_ms, end_ms) in enumerate(windows):
            parts = decompose(start_ms, end_ms)
            for level, periods in ((MONTH, parts.months), (DAY, parts.days), (HOUR, parts.hours)):
                self.periods[level.name].update(dict.fromkeys(periods, index))
            self.periods[MINUTE.name].update(dict.fromkeys(parts.minutes, index))
            self.partial.extend((minute, lo, hi, index) for minute, lo, hi in parts.partial_minutes)

    def coarsest(self) -> int:
        """Index in LEVELS of the coarsest level read from rollups (-1: none)."""
        return max((i for i, level in enumerate(LEVELS) if self.periods[level.name]), default=-1)

    def read_count(self) -> int:
        """How many requests reading this plan takes."""
        runs = sum(len(_runs(level, self.periods[level.name])) for level in LEVELS)
        return runs + len({MINUTE.bucket_of(minute) for minute in self.direct}) + len(self.partial)

    def split_pending(self, marked: dict[str, set[int]]) -> None:
        """Replace every period with a mark in it by its children; marked minutes are counted directly."""
        tainted: dict[str, set[int]] = {level.name: set() for level in LEVELS}
        for level in LEVELS:
            for period in marked.get(level.name, ()):
                for holder, held in ancestors(level, period):
                    tainted[holder.name].add(held)
        for level in (MONTH, DAY, HOUR):
            mine, below = self.periods[level.name], self.periods[finer(level).name]
            for period in tainted[level.name].intersection(mine):
                below.update(dict.fromkeys(children(level, period), mine.pop(period)))
        minutes = self.periods[MINUTE.name]
        self.direct = {minute: minutes.pop(minute) for minute in tainted[MINUTE.name].intersection(minutes)}


class ExactCounts:
    """Counts starts per country over windows from rollups and pending marks (see the module docstring)."""

    __slots__ = ("_marks", "_max_direct", "_store")

    def __init__(self, store: RollupStore, marks: PendingMarks, max_direct_minutes: int) -> None:
        self._store = store
        self._marks = marks
        self._max_direct = max_direct_minutes

    async def count(self, windows: Sequence[Window]) -> WindowCounts:
        """Starts per country of each window; the windows must not overlap."""
        plan = _Plan(windows)
        first_ms, end_ms = min(start for start, _ in windows), max(end for _, end in windows)
        marked: dict[str, set[int]] = {}
        pending = 0
        for level in LEVELS[: plan.coarsest() + 1]:  # finest first, one after another (point 3)
            first, last = level.of_ms(first_ms), level.of_ms(end_ms - 1)
            limit = self._max_direct + 1 if level is MINUTE else (last - first + 1)
            found = await self._marks.read_range(level.name, first, last, limit)
            if level is MINUTE and len(found) > self._max_direct:
                # At least what was seen, should recounts have cleared some since.
                pending = max(len(found), await self._count_pending(plan.coarsest(), first_ms, end_ms))
                break
            marked[level.name] = set(found)
        if not pending:
            split = _Plan(windows)
            split.split_pending(marked)
            # Marks left on many coarse periods (a recount round marks parents that only the next
            # round clears) would split a long window into thousands of reads: not worth it.
            if split.read_count() <= MAX_READS:
                plan = split
            else:
                pending = sum(map(len, marked.values()))
        counts = [Counter[str]() for _ in windows]
        for part in await asyncio.gather(*self._reads(plan)):
            for index, found in part:
                counts[index].update(found)
        return WindowCounts(counts, pending)

    async def _count_pending(self, coarsest: int, first_ms: int, end_ms: int) -> int:
        """How many periods of the window's levels are marked, counted by Cassandra (no rows come back)."""
        counts = await asyncio.gather(
            *(
                self._marks.count_range(level.name, level.of_ms(first_ms), level.of_ms(end_ms - 1))
                for level in LEVELS[: coarsest + 1]
            )
        )
        return sum(counts)

    def _reads(self, plan: _Plan) -> list[Coroutine[Any, Any, list[tuple[int, Mapping[str, int]]]]]:
        reads = [
            self._rollup_run(level, run, plan.periods[level.name])
            for level in LEVELS
            for run in _runs(level, plan.periods[level.name])
        ]
        for _, group in groupby(sorted(plan.direct), key=MINUTE.bucket_of):  # one request per hour
            reads.append(self._direct(list(group), plan.direct))
        reads.extend(self._partial(minute, lo, hi, index) for minute, lo, hi, index in plan.partial)
        return reads

    async def _rollup_run(self, level: Level, run: list[int], tags: Tagged) -> list[tuple[int, Mapping[str, int]]]:
        rows = await self._store.period_rows(level, level.bucket_of(run[0]), run[0], run[-1])
        return [(tags[period], counts) for period, counts in rows]

    async def _direct(self, minutes: list[int], tags: Tagged) -> list[tuple[int, Mapping[str, int]]]:
        counted = await self._store.count_minutes(minutes)
        return [(tags[minute], counts) for minute, counts in counted.items()]

    async def _partial(self, minute: int, lo: int, hi: int, index: int) -> list[tuple[int, Mapping[str, int]]]:
        return [(index, await self._store.count_minute(minute, lo, hi))]


def _runs(level: Level, periods: Iterable[int]) -> list[list[int]]:
    """Consecutive periods within one partition: each is one range read that returns only them."""
    runs: list[list[int]] = []
    for period in sorted(periods):
        if runs and runs[-1][-1] == period - 1 and level.bucket_of(period) == level.bucket_of(runs[-1][0]):
            runs[-1].append(period)
        else:
            runs.append([period])
    return runs
