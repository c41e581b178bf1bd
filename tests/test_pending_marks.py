"""Pending marks partitioned by level and time: which partitions a range reads, and the move from
the old `rollup_pending` table (schema version 4) on the real node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import config_for

from cql.driver import Database
from cql.pending import PERIODS_PER_PARTITION, PendingMarks, bucket_of, bucket_ranges
from cql.schema import SCHEMA_VERSION, apply_schema, recorded_version

MINUTES = PERIODS_PER_PARTITION["minute"]


def test_a_range_inside_one_partition_is_one_read() -> None:
    assert bucket_ranges("minute", 10 * MINUTES + 5, 10 * MINUTES + 1_444) == [
        (10, 10 * MINUTES + 5, 10 * MINUTES + 1_444)
    ]


def test_a_range_over_partitions_is_cut_at_their_edges() -> None:
    first, last = 3 * MINUTES - 2, 5 * MINUTES + 1
    assert bucket_ranges("minute", first, last) == [
        (2, first, 3 * MINUTES - 1),
        (3, 3 * MINUTES, 4 * MINUTES - 1),
        (4, 4 * MINUTES, 5 * MINUTES - 1),
        (5, 5 * MINUTES, last),
    ]


@pytest.mark.parametrize(("level", "year"), [("minute", 525_600), ("hour", 8_760), ("day", 365), ("month", 12)])
def test_a_year_of_any_level_is_at_most_two_partitions(level: str, year: int) -> None:
    reads = {len(bucket_ranges(level, first, first + year - 1)) for first in range(0, 3 * year, year // 7 + 1)}
    assert max(reads) <= 2


@pytest.fixture
async def marks(isolated_keyspace: str) -> AsyncIterator[PendingMarks]:
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    try:
        yield await PendingMarks.prepare(db)
    finally:
        await db.close()


@pytest.mark.cassandra
async def test_range_reads_and_counts_see_marks_across_partitions(marks: PendingMarks) -> None:
    periods = [MINUTES * 7 - 1, MINUTES * 7, MINUTES * 7 + 3, MINUTES * 9 + 2]
    await marks.mark("minute", dict.fromkeys(periods, 600), 1, concurrency=4)
    assert sorted(await marks.read_range("minute", MINUTES * 7 - 5, MINUTES * 9 + 2, 100)) == periods
    assert await marks.read_range("minute", MINUTES * 7, MINUTES * 8, 100) == periods[1:3]
    assert len(await marks.read_range("minute", 0, MINUTES * 10, 2)) == 2
    assert await marks.count_range("minute", MINUTES * 7 - 1, MINUTES * 9 + 1) == 3
    assert await marks.count_range("hour", 0, 10**6) == 0
    await marks.clear("minute", periods[:1], before_us=1, concurrency=4)  # older than the mark: no effect
    await marks.clear("minute", periods[1:2], before_us=time.time_ns() // 1000, concurrency=4)
    periods.pop(1)
    assert await marks.read() == {"minute": dict.fromkeys(periods, 1)}


@pytest.mark.cassandra
async def test_clearing_deletes_exactly_the_periods_named_and_spares_later_marks(marks: PendingMarks) -> None:
    edge = MINUTES * 8  # the first minute of a partition
    marked = list(range(edge - 3, edge + 3)) + [edge + 5, edge + 6, edge + 7]
    await marks.mark("minute", dict.fromkeys(marked, 600), 1, concurrency=4)
    before_us = time.time_ns() // 1000
    await marks.mark("minute", {edge + 1: 600}, 2, concurrency=4)  # marked again after the round began
    # Periods on both sides of the partition edge, a marked one left out (edge + 6), and periods
    # without a mark (edge + 3, edge + 4), which may be named too.
    await marks.clear("minute", [*range(edge - 3, edge + 5), edge + 5, edge + 7], before_us, concurrency=4)
    assert await marks.read() == {"minute": {edge + 1: 2, edge + 6: 1}}


@pytest.mark.cassandra
async def test_schema_apply_moves_the_marks_a_version_4_keyspace_holds(
    isolated_keyspace: str, cassandra_admin: Any
) -> None:
    # As a version 4 daemon left it: marks in `rollup_pending` (one partition per period % 64), version 4.
    cassandra_admin.execute(
        f"CREATE TABLE {isolated_keyspace}.rollup_pending (shard int, level text, period int, marked_us bigint,"
        " PRIMARY KEY ((shard), level, period))"
    )
    old = {("minute", 24_675_839): 11, ("hour", 411_263): 12, ("month", 24_202): 13}
    for (level, period), marked_us in old.items():
        cassandra_admin.execute(
            f"INSERT INTO {isolated_keyspace}.rollup_pending (shard, level, period, marked_us) VALUES (%s, %s, %s, %s)"
            " USING TTL 3600",
            (period % 64, level, period, marked_us),
        )
    cassandra_admin.execute(
        f"UPDATE {isolated_keyspace}.schema_version SET version = 4 WHERE component = 'player-session-service'"
    )
    config = config_for(isolated_keyspace)
    db = await Database.connect(config.cassandra)
    try:
        await apply_schema(db, config.cassandra, isolated_keyspace)
        assert await recorded_version(db, isolated_keyspace) == SCHEMA_VERSION
        moved = await (await PendingMarks.prepare(db)).read()
    finally:
        await db.close()
    assert {(level, period): marked for level, periods in moved.items() for period, marked in periods.items()} == old
    rows = cassandra_admin.execute(
        f"SELECT level, bucket, period, TTL(marked_us) AS ttl FROM {isolated_keyspace}.rollup_marks"
    )
    for row in rows:  # in the partition the new layout reads, with the old mark's remaining life
        assert row.bucket == bucket_of(row.level, row.period)
        assert 3_500 < row.ttl <= 3_600
