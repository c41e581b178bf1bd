"""Finished requests are freed by reference counting, and nothing we hand the driver breaks its timers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import ResponseFuture
from cassandra.connection import Timer
from conftest import config_for

from cql.driver import Database, _await_response, _call_soon
from cql.driver_internals import release

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


async def test_a_request_whose_waiter_was_cancelled_keeps_its_timer_until_it_finishes(isolated_keyspace: str) -> None:
    """Dropping an armed timer would let it fire on the finished request, in the driver's thread."""
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    try:
        response = db.session.execute_async(f"SELECT * FROM {isolated_keyspace}.compat_cursor")
        timer = response._timer
        assert timer is not None and not timer.canceled
        waiter = asyncio.ensure_future(_await_response(response))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.to_thread(response.result)
        assert timer.canceled  # the driver still held it, and cancelled it when the answer came
    finally:
        await db.close()


def test_release_drops_only_a_cancelled_timer() -> None:
    class Finished:
        _timer: Timer | None = Timer(10.0, lambda: None)

    request: Any = Finished()
    release(request)
    assert request._timer is not None and not request._timer.canceled  # still armed: kept
    request._timer.cancel()
    release(request)
    assert request._timer is None


def test_a_driver_callback_after_the_loop_closed_does_not_raise() -> None:
    """An exception in a driver timeout callback makes its event thread retry it forever."""
    loop = asyncio.new_event_loop()
    loop.close()
    _call_soon(loop, print, "never delivered")
