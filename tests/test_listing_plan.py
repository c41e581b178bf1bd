"""How the country listing plans its multi-partition reads, and its fallback when Cassandra's order changes."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from cql.reads import _STATEMENTS, FIRST_HOURS, RUN_HOURS, Reads, _first_wave
from daemon.core.instants import MS_PER_HOUR

HOURS = list(range(5_000, 4_000, -1))  # 1,000 non-empty hours, newest first


def test_counted_hours_name_exactly_what_the_page_needs_in_runs() -> None:
    runs = _first_wave(HOURS, [3] * len(HOURS), want=1_001)
    named = [hour for run in runs for hour in run]
    assert named == HOURS[:334]  # 334 hours of 3 starts hold the 1,001 rows; not one more
    assert [len(run) for run in runs] == [RUN_HOURS] * 5 + [334 - 5 * RUN_HOURS]


def test_a_busy_hour_fills_the_page_alone() -> None:
    assert _first_wave(HOURS, [5_000] + [1] * (len(HOURS) - 1), want=1_001) == [HOURS[:1]]


def test_hours_not_counted_yet_are_guessed_at_the_mean_of_the_counted() -> None:
    counts: list[int | None] = [None, None] + [10] * (len(HOURS) - 2)
    runs = _first_wave(HOURS, counts, want=101)
    assert [hour for run in runs for hour in run] == HOURS[:11]


def test_without_any_count_the_first_wave_is_one_long_request() -> None:
    assert _first_wave(HOURS, [None] * len(HOURS), want=1_001) == [HOURS[:FIRST_HOURS]]
    # The cursor's hour is zeroed by the caller: it is not a count to guess from.
    assert _first_wave(HOURS, [0] + [None] * (len(HOURS) - 1), want=1_001) == [HOURS[:FIRST_HOURS]]


def test_counts_that_cannot_fill_the_page_name_every_hour() -> None:
    runs = _first_wave(HOURS[:100], [2] * 100, want=1_001)
    assert [hour for run in runs for hour in run] == HOURS[:100]


class _Bound:
    """What a fake binder returns: the values it was given, encoded as the real one would."""

    def __init__(self, values: Sequence[bytes]) -> None:
        self.values = list(values)


class _Binder:
    def bind(self, values: Sequence[bytes]) -> _Bound:
        return _Bound(values)


def _decode_int_list(blob: bytes) -> list[int]:
    (count,) = struct.unpack_from(">i", blob)
    return [struct.unpack_from(">ii", blob, 4 + 8 * index)[1] for index in range(count)]


class _ShuffledDatabase:
    """Answers a multi-hour request oldest hour first, as a Cassandra that ordered IN differently would."""

    def __init__(self, rows_by_hour: dict[int, list[tuple[dt.datetime, uuid.UUID, str]]]) -> None:
        self.rows_by_hour = rows_by_hour
        self.requests: list[list[int]] = []

    async def execute(self, statement: _Bound) -> list[tuple[Any, ...]]:
        values = statement.values
        if len(values) == 3:  # the hour index: no counts, so the first wave is one request
            return [(hour, None) for hour in sorted(self.rows_by_hour, reverse=True)]
        hours = [-key for key in _decode_int_list(values[1])]
        self.requests.append(hours)
        (limit,) = struct.unpack(">i", values[-1])
        rows = [(-hour, *row) for hour in sorted(hours) for row in self.rows_by_hour.get(hour, [])]
        return rows[:limit]


async def test_rows_out_of_key_order_are_read_again_hour_by_hour() -> None:
    base = dt.datetime(2016, 11, 30)
    rows_by_hour = {
        hour: [(base + dt.timedelta(hours=hour - 410_000, minutes=minute), uuid.uuid4(), "p") for minute in (50, 10)]
        for hour in (410_010, 410_005, 410_001)
    }
    db = _ShuffledDatabase(rows_by_hour)
    binders: Any = {name: _Binder() for name in _STATEMENTS}
    reads = Reads(db, binders)  # type: ignore[arg-type]
    starts, resume = await reads.country_starts("UY", 410_000 * MS_PER_HOUR, 410_020 * MS_PER_HOUR, 3, None)
    newest_first = [row for hour in (410_010, 410_005, 410_001) for row in rows_by_hour[hour]]
    assert [(start.ts, start.session_id) for start in starts] == [(ts, sid) for ts, sid, _ in newest_first[:3]]
    assert resume is not None and resume.hour == 410_005
    assert db.requests[0] == [410_010, 410_005, 410_001]  # the multi-partition read, rejected
    assert sorted(db.requests[1:]) == [[410_001], [410_005], [410_010]]  # then one hour at a time

