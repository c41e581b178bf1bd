"""Calendar arithmetic for rollups: epoch hours, days and month indexes, and window decomposition."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from daemon.core.instants import MS_PER_MINUTE

MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24
_EPOCH_DATE = dt.date(1970, 1, 1)
# Spans of a country's listing partition that tile a day, so a partition never straddles midnight.
PARTITION_SPANS = (1, 2, 3, 4, 6, 8, 12, 24)


def partition_hour(hour: int, span: int) -> int:
    """The first epoch hour of the `span`-hour partition holding `hour`."""
    return hour - hour % span


def month_of_day(day: int) -> int:
    """Month index = year * 12 + (month - 1)."""
    date = _EPOCH_DATE + dt.timedelta(days=day)
    return date.year * 12 + date.month - 1


def first_day_of_month(month: int) -> int:
    return (dt.date(month // 12, month % 12 + 1, 1) - _EPOCH_DATE).days


@dataclass(slots=True)
class Decomposition:
    """A window [start_ms, end_ms) as whole months, days, hours and minutes, plus partial minutes."""

    months: list[int] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    minutes: list[int] = field(default_factory=list)
    partial_minutes: list[tuple[int, int, int]] = field(default_factory=list)  # (minute, start_ms, end_ms)


def decompose(start_ms: int, end_ms: int) -> Decomposition:
    """Split [start_ms, end_ms) into the coarsest whole periods, so a year is a few dozen rollup rows."""
    parts = Decomposition()
    if end_ms <= start_ms:
        return parts
    first_minute, end_minute = _ceil_div(start_ms, MS_PER_MINUTE), end_ms // MS_PER_MINUTE
    if first_minute > end_minute:  # the window lies inside one minute
        parts.partial_minutes.append((start_ms // MS_PER_MINUTE, start_ms, end_ms))
        return parts
    if start_ms < first_minute * MS_PER_MINUTE:
        parts.partial_minutes.append((first_minute - 1, start_ms, first_minute * MS_PER_MINUTE))
    if end_minute * MS_PER_MINUTE < end_ms:
        parts.partial_minutes.append((end_minute, end_minute * MS_PER_MINUTE, end_ms))
    hours = _whole_within(first_minute, end_minute, MINUTES_PER_HOUR, parts.minutes)
    if hours is None:
        return parts
    days = _whole_within(hours[0], hours[1], HOURS_PER_DAY, parts.hours)
    if days is not None:
        _split_days(parts, *days)
    return parts


def _whole_within(first: int, end: int, ratio: int, leftovers: list[int]) -> tuple[int, int] | None:
    """The coarser periods (each `ratio` fine ones) inside fine range [first, end); the rest go to `leftovers`."""
    coarse_first, coarse_end = _ceil_div(first, ratio), end // ratio
    if coarse_first >= coarse_end:
        leftovers.extend(range(first, end))
        return None
    leftovers.extend(range(first, coarse_first * ratio))
    leftovers.extend(range(coarse_end * ratio, end))
    return coarse_first, coarse_end


def _ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


def _split_days(parts: Decomposition, first_day: int, end_day: int) -> None:
    """Whole months where a month fits entirely, single days elsewhere (at most ~60 of them)."""
    day = first_day
    while day < end_day:
        month = month_of_day(day)
        month_end = first_day_of_month(month + 1)
        if day == first_day_of_month(month) and month_end <= end_day:
            parts.months.append(month)
            day = month_end
        else:
            parts.days.append(day)
            day += 1
