"""How the country listing plans its multi-partition reads, and its fallback when Cassandra's order changes."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from cql.reads import _STATEMENTS, FIRST_HOURS, RUN_PARTITIONS, Reads, _first_wave, _partition_runs, _whole_partitions
from daemon.core.instants import MS_PER_HOUR

HOURS = list(range(5_000, 4_000, -1))  # 1,000 non-empty hours, newest first


def test_counted_hours_name_exactly_what_the_page_needs() -> None:
    assert _first_wave([3] * len(HOURS), want=1_001) == 334  # 334 hours of 3 starts hold the 1,001 rows; not one more


def test_a_busy_hour_fills_the_page_alone() -> None:
    assert _first_wave([5_000] + [1] * (len(HOURS) - 1), want=1_001) == 1


def test_hours_not_counted_yet_are_guessed_at_the_mean_of_the_counted() -> None:
    counts: list[int | None] = [None, None] + [10] * (len(HOURS) - 2)
    assert _first_wave(counts, want=101) == 11


def test_without_any_count_the_first_wave_is_one_long_request() -> None:
    assert _first_wave([None] * len(HOURS), want=1_001) == FIRST_HOURS
    # The cursor's hour is zeroed by the caller: it is not a count to guess from.
    assert _first_wave([0] + [None] * (len(HOURS) - 1), want=1_001) == FIRST_HOURS


def test_counts_that_cannot_fill_the_page_name_every_hour() -> None:
    assert _first_wave([2] * 100, want=1_001) == 100


def test_hour_partitions_are_named_one_per_hour_in_runs() -> None:
    runs = _partition_runs(HOURS[:334], 1)
    assert [hour for run in runs for hour in run] == HOURS[:334]
    assert [len(run) for run in runs] == [RUN_PARTITIONS] * 5 + [334 - 5 * RUN_PARTITIONS]


def test_day_partitions_are_named_once_each_by_their_first_hour() -> None:
    hours = [24 * 100 + 23, 24 * 100 + 5, 24 * 99 + 12, 24 * 97, 24 * 96 + 23]  # newest first, a day skipped
    assert _partition_runs(hours, 24) == [[24 * 100, 24 * 99, 24 * 97, 24 * 96]]
    assert _partition_runs(hours, 6) == [[24 * 100 + 18, 24 * 100, 24 * 99 + 12, 24 * 97, 24 * 96 + 18]]


def test_a_wave_ends_with_its_last_partition_so_no_partition_is_read_twice() -> None:
    hours = [24 * 100 + 23, 24 * 100 + 5, 24 * 99 + 12, 24 * 99 + 3, 24 * 99 + 1, 24 * 98]
    assert _whole_partitions(hours, 0, 3, 24) == 5  # the third hour's day holds two more
    assert _whole_partitions(hours, 1, 1, 24) == 1  # the day's last listed hour: nothing to add
    assert _whole_partitions(hours, 2, 4, 24) == 4  # the end of the list
    assert _whole_partitions(hours, 0, 3, 1) == 3  # hour partitions never grow
    assert _whole_partitions(hours, 0, 0, 24) == 0


EPOCH = dt.datetime(1970, 1, 1)  # naive UTC, as the driver returns timestamps


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


class _FakeDatabase:
    """Answers the hour index without counts, and a multi-hour request newest hour first, as Cassandra 5.0
    does, or oldest first (`shuffled`), as a Cassandra that ordered IN differently would."""

    def __init__(
        self, rows_by_hour: dict[int, list[tuple[dt.datetime, uuid.UUID, str]]], shuffled: bool, span: int = 1
    ) -> None:
        self.rows_by_partition: dict[int, list[tuple[dt.datetime, uuid.UUID, str]]] = {}
        for hour in sorted(rows_by_hour, reverse=True):  # newest first within a partition, as its clustering
            self.rows_by_partition.setdefault(hour - hour % span, []).extend(rows_by_hour[hour])
        self.hours = list(rows_by_hour)
        self.shuffled = shuffled
        self.requests: list[list[int]] = []

    async def execute(self, statement: _Bound) -> list[tuple[Any, ...]]:
        values = statement.values
        if len(values) == 3:  # the hour index: no counts, so the first wave is one request
            return [(hour, None) for hour in sorted(self.hours, reverse=True)]
        hours = [-key for key in _decode_int_list(values[1])]
        self.requests.append(hours)
        (limit,) = struct.unpack(">i", values[-1])
        order = sorted(hours, reverse=not self.shuffled)
        rows = [(-hour, *row) for hour in order for row in self.rows_by_partition.get(hour, [])]
        return rows[:limit]


async def test_rows_out_of_key_order_are_read_again_hour_by_hour() -> None:
    rows_by_hour = {
        hour: [(EPOCH + dt.timedelta(hours=hour, minutes=minute), uuid.uuid4(), "p") for minute in (50, 10)]
        for hour in (410_010, 410_005, 410_001)
    }
    db = _FakeDatabase(rows_by_hour, shuffled=True)
    binders: Any = {name: _Binder() for name in _STATEMENTS}
    reads = Reads(db, binders)  # type: ignore[arg-type]
    starts, resume = await reads.country_starts("UY", 410_000 * MS_PER_HOUR, 410_020 * MS_PER_HOUR, 3, None)
    newest_first = [row for hour in (410_010, 410_005, 410_001) for row in rows_by_hour[hour]]
    assert [(start.ts, start.session_id) for start in starts] == [(ts, sid) for ts, sid, _ in newest_first[:3]]
    assert resume is not None and resume.hour == 410_005
    assert db.requests[0] == [410_010, 410_005, 410_001]  # the multi-partition read, rejected
    assert sorted(db.requests[1:]) == [[410_001], [410_005], [410_010]]  # then one hour at a time


@pytest.mark.parametrize("span", [1, 24])
async def test_without_counts_one_request_names_the_partitions_of_the_first_hours(span: int) -> None:
    hours = range(410_300, 410_000, -1)  # 300 hours of one start each, newest first
    rows = {hour: [(EPOCH + dt.timedelta(hours=hour), uuid.uuid4(), "p")] for hour in hours}
    db = _FakeDatabase(rows, shuffled=False, span=span)
    reads = Reads(db, {name: _Binder() for name in _STATEMENTS}, span)  # type: ignore[arg-type]
    starts, resume = await reads.country_starts("UY", 410_000 * MS_PER_HOUR, 410_301 * MS_PER_HOUR, 280, None)
    assert len(starts) == 280 and resume is not None and resume.hour == 410_300 - 279
    first = list(dict.fromkeys(hour - hour % span for hour in hours[:FIRST_HOURS]))
    assert db.requests[0] == first  # one request, newest partition first
    assert all(len(request) <= RUN_PARTITIONS for request in db.requests[1:])
