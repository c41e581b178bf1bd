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

    def __repr__(self) -> str:
        return f"Level({self.name})"


MONTH = Level(
    "month", lambda month: month // MONTHS_PER_YEAR, lambda month: first_day_of_month(month + 1) * MS_PER_DAY, None
)
DAY = Level("day", month_of_day, lambda day: (day + 1) * MS_PER_DAY, MONTH)
HOUR = Level("hour", lambda hour: hour // HOURS_PER_DAY, lambda hour: (hour + 1) * MS_PER_HOUR, DAY)
MINUTE = Level("minute", lambda minute: minute // MINUTES_PER_HOUR, lambda minute: (minute + 1) * MS_PER_MINUTE, HOUR)

LEVELS = (MINUTE, HOUR, DAY, MONTH)  # finest first: each level is summed from the one before

_FINER = {level.parent.name: level for level in LEVELS if level.parent is not None}


def finer(level: Level) -> Level:
    """The level whose partition `bucket_of == P` sums to `level`'s period P (KeyError for minutes: raw rows)."""
    return _FINER[level.name]
