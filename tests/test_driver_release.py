"""Finished requests are freed by reference counting: no cycle keeps a request and its rows for the GC."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import ResponseFuture
from conftest import config_for

from cql.driver import Database

pytestmark = pytest.mark.cassandra


@pytest.fixture
def collector_off() -> Iterator[list[Any]]:
    """Collect now, then keep what the cyclic collector finds (instead of freeing it) until the test ends."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def cyclic_requests(garbage: list[Any], *tables: str) -> list[ResponseFuture]:
    """This test's requests that only the cyclic collector would have freed (the fixtures' own
    set-up requests, made through the synchronous API, are not this code's concern)."""
    gc.collect()
    return [
        item
        for item in garbage
        if isinstance(item, ResponseFuture) and any(table in str(item.query) for table in tables)
    ]


async def test_reads_and_pumped_writes_leave_no_request_in_a_cycle(
    isolated_keyspace: str, collector_off: list[Any]
) -> None:
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    try:
        table = f"{isolated_keyspace}.compat_cursor"
        insert = await db.prepare(f"INSERT INTO {table} (name, next_line) VALUES (?, ?)")
        missing = f"{isolated_keyspace}.no_such_table"
        rows_before = await db.execute(f"SELECT name FROM {table}")
        assert cyclic_requests(collector_off, table) == []

        errors = await db.execute_many([insert.bind((f"line-{n}", n)) for n in range(50)], concurrency=8)
        assert errors == [None] * 50
        rows = await db.execute(f"SELECT name, next_line FROM {table}", fetch_size=7)  # several pages
        assert len(rows) == len(rows_before) + 50
        assert cyclic_requests(collector_off, table) == []

        with pytest.raises(Exception, match="unconfigured table|does not exist"):
            await db.execute(f"SELECT * FROM {missing}")
        assert cyclic_requests(collector_off, missing) == []
    finally:
        await db.close()
