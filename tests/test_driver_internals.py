"""cassandra-driver internals the project relies on (cql/driver_internals.py) still behave as read.

A failure here after a driver upgrade is not a bug of this project: the message names the internal
that moved and what to do.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import cassandra
import pytest
from cassandra.query import BatchStatement, BatchType, BoundStatement, SimpleStatement
from conftest import config_for

from cql.binding import encode_int, encode_text, encode_timestamp, encode_uuid
from cql.driver import Database, _ExpectedServerWarnings
from cql.driver_internals import (
    DRIVER_VERSION_CHECKED,
    bound_statement_maker,
    next_paging_state,
    release,
    unlogged_batch,
)

pytestmark = pytest.mark.cassandra

UPGRADE = (
    f"cassandra-driver {cassandra.__version__} (internals read from {DRIVER_VERSION_CHECKED}) changed {{what}}: "
    "cql/driver_internals.py relies on it; {todo}"
)


@pytest.fixture
async def db(shared_keyspace: str) -> AsyncIterator[Database]:
    database = await Database.connect(config_for(shared_keyspace).cassandra)
    try:
        yield database
    finally:
        await database.close()


async def test_a_fast_bound_statement_equals_the_drivers_own_bind(db: Database) -> None:
    prepared = await db.prepare(
        f"UPDATE {db.keyspace}.sessions_by_player USING TTL ? SET start_ts = ?, country = ?"
        " WHERE player_id = ? AND session_id = ?"
    )
    session = uuid.uuid4()
    values = [3600, 1_480_550_400_000, "FI", "player", session]
    encoded = [
        encode_int(3600),
        encode_timestamp(1_480_550_400_000),
        encode_text("FI"),
        encode_text("player"),
        encode_uuid(session),
    ]
    ours = bound_statement_maker(prepared)(encoded)
    theirs = prepared.bind(values)
    todo = "compare BoundStatement.__init__/bind with bound_statement_maker, or bind with prepared.bind (slower)"
    assert isinstance(ours, BoundStatement)
    # `bind` also keeps the unencoded values (`raw_values`, for the statement's repr); nothing else may differ.
    assert theirs.__dict__.keys() - ours.__dict__.keys() == {"raw_values"}, UPGRADE.format(
        what="BoundStatement's attributes", todo=todo
    )
    assert ours.values == theirs.values, UPGRADE.format(what="how bound values are encoded", todo=todo)
    assert ours.routing_key == theirs.routing_key, UPGRADE.format(what="bound statements' routing keys", todo=todo)
    assert ours.keyspace == theirs.keyspace and ours.is_idempotent == theirs.is_idempotent
    await db.execute(ours)  # and Cassandra takes it
    rows = await db.execute(
        f"SELECT country FROM {db.keyspace}.sessions_by_player WHERE player_id = %s AND session_id = %s",
        ("player", session),
    )
    assert rows == [("FI",)]


async def test_a_fast_batch_equals_one_filled_by_add(db: Database) -> None:
    prepared = await db.prepare(f"INSERT INTO {db.keyspace}.start_hours_by_country (country, hour) VALUES (?, ?)")
    bind = bound_statement_maker(prepared)
    rows = [bind([encode_text(country), encode_int(hour)]) for country, hour in (("FI", 1), ("SE", 2), ("EE", 3))]
    ours = unlogged_batch(rows)
    theirs = BatchStatement(batch_type=BatchType.UNLOGGED)
    for row in rows:
        theirs.add(row)
    todo = "compare BatchStatement.add with unlogged_batch, or fill batches with add (slower)"
    assert ours._statements_and_parameters == theirs._statements_and_parameters, UPGRADE.format(
        what="how a batch keeps its statements", todo=todo
    )
    assert (ours.routing_key, ours.keyspace) == (theirs.routing_key, theirs.keyspace) == (b"FI", db.keyspace), (
        UPGRADE.format(what="how a batch takes its routing key", todo=todo)
    )
    assert ours.batch_type == BatchType.UNLOGGED and ours.is_idempotent
    await db.execute(ours)
    stored = await db.execute(f"SELECT country, hour FROM {db.keyspace}.start_hours_by_country WHERE country = 'SE'")
    assert ("SE", 2) in stored


async def test_the_next_page_state_is_the_one_the_result_set_exposes(db: Database) -> None:
    rows = [(f"paged-{uuid.uuid4()}",) for _ in range(5)]
    for (player,) in rows:
        await db.execute(
            f"INSERT INTO {db.keyspace}.sessions_by_player (player_id, session_id) VALUES (%s, %s)",
            (player, uuid.uuid4()),
        )
    statement = SimpleStatement(f"SELECT player_id FROM {db.keyspace}.sessions_by_player", fetch_size=2)
    response = db.session.execute_async(statement)
    result = response.result()
    todo = "read the page state from ResultSet.paging_state in Database.execute_page instead"
    assert hasattr(response, "_paging_state"), UPGRADE.format(what="ResponseFuture._paging_state", todo=todo)
    assert next_paging_state(response) == result.paging_state is not None, UPGRADE.format(
        what="ResponseFuture._paging_state", todo=todo
    )


async def test_a_finished_request_keeps_a_cancelled_timer_that_release_drops(db: Database) -> None:
    response = db.session.execute_async(SimpleStatement("SELECT release_version FROM system.local"), timeout=30)
    response.result()
    todo = (
        "check whether finished requests still hold their timer (tests/test_driver_release.py shows the cycle); "
        "if the driver drops it itself, release() can go"
    )
    assert hasattr(response, "_timer"), UPGRADE.format(what="ResponseFuture._timer", todo=todo)
    assert response._timer is not None and response._timer.canceled, UPGRADE.format(
        what="what a finished request keeps of its timeout timer", todo=todo
    )
    release(response)
    assert response._timer is None


def test_only_the_expected_server_warnings_are_dropped() -> None:
    def kept(warning: str) -> bool:
        record = logging.LogRecord("cassandra.protocol", logging.WARNING, "", 0, "Server warning: %s", (warning,), None)
        return _ExpectedServerWarnings().filter(record)

    assert not kept("Unlogged batch covering 7 partitions detected against tables [ks.starts_by_minute]")
    assert not kept("Read 208 live rows and 5805 tombstone cells for query SELECT * FROM ks.rollup_marks WHERE level")
    assert kept("Read 3 live rows and 5805 tombstone cells for query SELECT * FROM ks.country_starts WHERE country")
    assert kept("Aggregation query used without partition key")
