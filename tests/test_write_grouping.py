"""How a flush becomes statements, with the statements prepared on the real node: one partition per
group, batches within their bound, and the hour index written once per (country, hour)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from cassandra.query import BatchStatement, BoundStatement
from conftest import config_for

from cql.batches import MAX_BATCH_STATEMENTS
from cql.driver import Database
from cql.writes import EventWriter
from daemon.core.events import Event
from daemon.core.instants import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE

pytestmark = pytest.mark.cassandra

NOW_MS = 1_480_550_400_000  # 2016-12-01T00:00:00Z
RETENTION_MS = 365 * MS_PER_DAY


@pytest.fixture
async def writer(shared_keyspace: str) -> AsyncIterator[EventWriter]:
    db = await Database.connect(config_for(shared_keyspace).cassandra)
    try:
        yield await EventWriter.prepare(db)
    finally:
        await db.close()


# A player's session rows and its start index share the partition key: one mutation per batch.
PLAYER_TABLES = {"sessions_by_player", "player_starts"}


def table(statement: BoundStatement) -> str:
    return statement.prepared_statement.column_metadata[0].table_name


def partition(statement: BoundStatement) -> tuple[str, bytes]:
    """(table, or "player" for both player tables; partition key bytes) as the driver routes them."""
    name = table(statement)
    return ("player" if name in PLAYER_TABLES else name), statement.routing_key


def start(player: str, ts_ms: int, country: str = "FI") -> Event:
    return Event("start", player, uuid.uuid4(), ts_ms, country)


def end(player: str, ts_ms: int) -> Event:
    return Event("end", player, uuid.uuid4(), ts_ms, None)


async def test_every_group_is_one_partition_and_holds_all_of_its_rows(writer: EventWriter) -> None:
    hour = NOW_MS - 5 * MS_PER_HOUR
    flush = [start(f"p{i % 7}", hour + i * 7_000, "FI" if i % 3 else "SE") for i in range(300)]
    flush += [end(f"p{i % 7}", hour + i * 9_000) for i in range(100)]
    groups = writer.partition_groups(flush, RETENTION_MS, NOW_MS)
    keys = [{partition(statement) for statement in group} for group in groups]
    assert all(len(key) == 1 for key in keys), "a group mixes partitions"
    assert len({next(iter(key)) for key in keys}) == len(groups), "one partition's rows are split across groups"
    tables = Counter(next(iter(key))[0] for key in keys)
    assert tables["player"] == 7
    rows = Counter(table(statement) for group in groups for statement in group)
    assert rows["sessions_by_player"] == 400 and rows["player_starts"] == 300
    assert rows["country_starts"] == 300 and rows["starts_by_minute"] == 300


async def test_batches_stay_within_their_bound_and_a_lone_row_is_sent_bare(writer: EventWriter) -> None:
    heavy = [start("heavy", NOW_MS - MS_PER_DAY + i * MS_PER_MINUTE) for i in range(2 * MAX_BATCH_STATEMENTS + 5)]
    lone = [end("lone", NOW_MS - 3 * MS_PER_DAY + 30 * MS_PER_MINUTE)]
    statements = writer.statements_for(heavy + lone, RETENTION_MS, NOW_MS)
    batches = [statement for statement in statements if isinstance(statement, BatchStatement)]
    sizes = sorted(len(batch._statements_and_parameters) for batch in batches)
    # The heavy player's rows: 85 session rows and 85 index rows in batches of 40 (x4) and 10; its
    # country-hours hold 60, 60 and 5 starts.
    assert max(sizes) == MAX_BATCH_STATEMENTS
    heavy_batches = [len(batch._statements_and_parameters) for batch in batches if batch.routing_key == b"heavy"]
    assert sorted(heavy_batches) == [10, 40, 40, 40, 40]
    assert all(batch.batch_type.name == "UNLOGGED" and batch.is_idempotent for batch in batches)
    bare = [statement for statement in statements if isinstance(statement, BoundStatement)]
    assert ("player", b"lone") in {partition(statement) for statement in bare}
    assert all(statement.is_idempotent for statement in bare)


async def test_the_hour_index_is_written_once_per_country_hour_until_it_is_known(writer: EventWriter) -> None:
    hour = NOW_MS - 10 * MS_PER_HOUR
    flush = [start(f"p{i}", hour + i * 1_000, "NO") for i in range(50)] + [start("q", hour + MS_PER_HOUR, "NO")]

    def index_rows(events: list[Event]) -> list[BoundStatement]:
        groups = writer.partition_groups(events, RETENTION_MS, NOW_MS)
        return [row for group in groups for row in group if partition(row)[0] == "start_hours_by_country"]

    assert len(index_rows(flush)) == 2  # two hours of NO, whatever the number of starts
    writer.remember_hours(flush)  # what the actor does once the flush is durable
    assert index_rows(flush) == []
    assert len(index_rows([start("r", hour, "DK")])) == 1  # another country's hour is still new
