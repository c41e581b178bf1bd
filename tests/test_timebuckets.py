"""Unit tests of window decomposition: every window is covered exactly once, coarsely."""

from __future__ import annotations

import random

from daemon.core.instants import MS_PER_HOUR, MS_PER_MINUTE
from daemon.core.timebuckets import decompose, first_day_of_month, month_of_day

DEMO_NOW = 1_480_550_400_000  # 2016-12-01T00:00:00Z


def segments(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    parts = decompose(start_ms, end_ms)
    day = 24 * MS_PER_HOUR
    spans = [(first_day_of_month(m) * day, first_day_of_month(m + 1) * day) for m in parts.months]
    spans += [(d * day, (d + 1) * day) for d in parts.days]
    spans += [(h * MS_PER_HOUR, (h + 1) * MS_PER_HOUR) for h in parts.hours]
    spans += [(m * MS_PER_MINUTE, (m + 1) * MS_PER_MINUTE) for m in parts.minutes]
    for minute, lo, hi in parts.partial_minutes:
        assert lo // MS_PER_MINUTE == minute == (hi - 1) // MS_PER_MINUTE
        spans.append((lo, hi))
    return sorted(spans)


def test_random_windows_are_tiled_exactly() -> None:
    rng = random.Random(7)
    for index in range(5000):
        start = rng.randrange(1_400_000_000_000, 1_500_000_000_000)
        if index % 3 == 0:
            start -= start % MS_PER_HOUR
        length = rng.choice([1, rng.randrange(1, 3 * MS_PER_HOUR), rng.randrange(1, 400 * 24 * MS_PER_HOUR)])
        spans = segments(start, start + length)
        assert spans[0][0] == start and spans[-1][1] == start + length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_a_year_back_from_the_demo_now_is_a_few_dozen_rows() -> None:
    parts = decompose(DEMO_NOW - 8760 * MS_PER_HOUR + 1, DEMO_NOW + 1)
    assert len(parts.months) == 11
    assert len(parts.days) + len(parts.hours) + len(parts.minutes) < 120
    assert len(parts.partial_minutes) == 2


def test_month_index_round_trip() -> None:
    day = DEMO_NOW // (24 * MS_PER_HOUR)
    assert month_of_day(day) == 2016 * 12 + 11
    assert first_day_of_month(month_of_day(day)) == day
