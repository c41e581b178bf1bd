"""Rollup levels, finest first: minute, hour, day, month; each period's row, its end, and the period above it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.core.instants import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE
from daemon.core.timebuckets import HOURS_PER_DAY, MINUTES_PER_HOUR, first_day_of_month, month_of_day

MONTHS_PER_YEAR = 12


@dataclass(frozen=True, slots=True, eq=False)
class Level:
    """One rollup granularity. Periods are whole numbers (epoch minutes, hours, days; year * 12 + month - 1).

    A period's row lives in partition `bucket_of(period)`, which is also the period of the `parent`
    level that contains it: so a parent period's count is the sum of one partition of its child
    level, and a recount of a period makes exactly that parent period stale.
    """

    name: str
    bucket_of: Callable[[int], int]
    end_ms_of: Callable[[int], int]  # when the period ends (exclusive), for windows and TTLs
    parent: Level | None
    of_ms: Callable[[int], int]  # the period holding an instant (epoch ms)

    def __repr__(self) -> str:
        return f"Level({self.name})"


MONTH = Level(
    "month",
    lambda month: month // MONTHS_PER_YEAR,
    lambda month: first_day_of_month(month + 1) * MS_PER_DAY,
    None,
    lambda ms: month_of_day(ms // MS_PER_DAY),
)
DAY = Level("day", month_of_day, lambda day: (day + 1) * MS_PER_DAY, MONTH, lambda ms: ms // MS_PER_DAY)
HOUR = Level(
    "hour", lambda hour: hour // HOURS_PER_DAY, lambda hour: (hour + 1) * MS_PER_HOUR, DAY, lambda ms: ms // MS_PER_HOUR
)
MINUTE = Level(
    "minute",
    lambda minute: minute // MINUTES_PER_HOUR,
    lambda minute: (minute + 1) * MS_PER_MINUTE,
    HOUR,
    lambda ms: ms // MS_PER_MINUTE,
)

LEVELS = (MINUTE, HOUR, DAY, MONTH)  # finest first: each level is summed from the one before

_FINER = {level.parent.name: level for level in LEVELS if level.parent is not None}


def finer(level: Level) -> Level:
    """The level whose partition `bucket_of == P` sums to `level`'s period P (KeyError for minutes: raw rows)."""
    return _FINER[level.name]


def children(level: Level, period: int) -> range:
    """The periods of the finer level that make up `period` (KeyError for minutes)."""
    child = finer(level)
    first = child.of_ms(level.end_ms_of(period - 1))  # the instant `period` starts
    return range(first, child.of_ms(level.end_ms_of(period) - 1) + 1)


def ancestors(level: Level, period: int) -> list[tuple[Level, int]]:
    """(level, period) for `period` itself and every coarser period holding it, finest first."""
    chain = []
    current: Level | None = level
    while current is not None:
        chain.append((current, period))
        period = current.bucket_of(period)
        current = current.parent
    return chain
