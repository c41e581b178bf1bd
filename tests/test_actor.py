"""The actors with fake storage: retry deadline, retried statements, rollup marks, listeners, in-flight bound."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from cql.driver import InFlight
from daemon.core.clock import Clock
from daemon.core.config import IngestConfig
from daemon.core.events import Event
from daemon.core.instants import parse_instant
from daemon.ingest.errors import StorageUnavailable
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.priority import HOLD_SECONDS, ReadPriority

CLOCK = Clock(parse_instant("2016-12-01T00:00:00Z"))


def events(count: int) -> list[Event]:
    return [Event("start", f"p{i}", uuid.uuid4(), 0, "FI") for i in range(count)]


class OneStatementPerEvent:
    """A writer whose statements are the events' player ids, so a test can see which ones were sent."""

    def __init__(self) -> None:
        self.remembered: list[Event] = []

    def statements_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Any]:
        return [event.player_id for event in events]

    def pending_marks_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Any]:
        return [f"mark {event.ts_ms // 60_000}" for event in events]

    def remember_hours(self, events: Iterable[Event]) -> None:
        self.remembered.extend(events)


class ScriptedDatabase:
    """Fails the statements named in `failures` (each as many times as listed); records every call."""

    def __init__(self, failures: dict[str, int] | None = None, always_fail: bool = False) -> None:
        self.failures = dict(failures or {})
        self.always_fail = always_fail
        self.calls: list[tuple[list[Any], int, float]] = []

    async def execute_many(self, statements: Sequence[Any], concurrency: InFlight) -> list[BaseException | None]:
        depth = concurrency() if callable(concurrency) else concurrency
        self.calls.append((list(statements), depth, asyncio.get_running_loop().time()))
        errors: list[BaseException | None] = []
        for statement in statements:
            if self.always_fail or self.failures.get(statement, 0) > 0:
                self.failures[statement] = self.failures.get(statement, 0) - 1
                errors.append(TimeoutError(f"{statement} timed out"))
            else:
                errors.append(None)
        return errors


def pipeline(
    db: Any, writer: Any = None, listeners: Sequence[Any] = (), priority: ReadPriority | None = None, **settings: Any
) -> Pipeline:
    config = IngestConfig(**{"actors": 1, "linger_ms": 0.0, "write_retry_seconds": 0.3, **settings})
    return Pipeline(db, writer or OneStatementPerEvent(), config, CLOCK, listeners, priority)


async def test_a_failing_write_is_retried_with_backoff_until_the_deadline_then_503() -> None:
    db = ScriptedDatabase(always_fail=True)
    ingest = pipeline(db)
    ingest.start()
    with pytest.raises(StorageUnavailable, match="2 writes failed: TimeoutError"):
        await ingest.submit(events(2))
    # Attempts at 0, 0.05 and 0.15 s; the next (after 0.2 s more) would pass the 0.3 s deadline.
    assert len(db.calls) == 3
    assert all(not statements[0].startswith("mark") for statements, _, _ in db.calls)  # no mark without its rows
    gaps = [later[2] - earlier[2] for earlier, later in zip(db.calls, db.calls[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1
    assert ingest.queued_events() == 0  # the failed request's room was given back
    await ingest.close(1.0)


async def test_only_the_failed_statements_are_sent_again() -> None:
    db = ScriptedDatabase(failures={"p1": 2})
    writer = OneStatementPerEvent()
    ingest = pipeline(db, writer)
    ingest.start()
    await ingest.submit(events(3))
    # The rows (retried until stored), then their rollup marks, which only go once the rows are durable.
    assert [statements for statements, _, _ in db.calls] == [["p0", "p1", "p2"], ["p1"], ["p1"], ["mark 0"] * 3]
    assert len(writer.remembered) == 3  # hour-index rows are remembered only once durable
    await ingest.close(1.0)


async def test_a_failing_listener_cannot_fail_a_request_whose_events_are_stored(caplog: Any) -> None:
    told: list[int] = []

    def broken(stored: Sequence[Event]) -> None:
        raise RuntimeError("listener bug")

    def counting(stored: Sequence[Event]) -> None:
        told.append(len(stored))

    ingest = pipeline(ScriptedDatabase(), listeners=(broken, counting))
    ingest.start()
    with caplog.at_level(logging.ERROR, logger="daemon.ingest.actor"):
        await ingest.submit(events(4))  # no StorageUnavailable: the events are stored
    assert told == [4]  # the listener after the broken one still hears of them
    assert "listener" in caplog.text and "listener bug" in caplog.text
    await ingest.close(1.0)


async def test_the_actors_share_the_bound_on_writes_in_flight() -> None:
    db = ScriptedDatabase()
    ingest = pipeline(db, actors=4, max_inflight_writes=10)
    ingest.start()
    await ingest.submit(events(200))
    assert {concurrency for _, concurrency, _ in db.calls} == {2}  # 10 // 4 actors, never more in total
    await ingest.close(1.0)


async def test_writes_in_flight_drop_while_a_query_is_answered_and_a_moment_after() -> None:
    now = [100.0]
    db, priority = ScriptedDatabase(), ReadPriority(clock=lambda: now[0])
    ingest = pipeline(db, priority=priority, actors=2, max_inflight_writes=64, inflight_writes_while_answering=8)
    ingest.start()

    async def depths_of_a_request() -> set[int]:
        db.calls.clear()
        await ingest.submit(events(10))
        return {depth for _, depth, _ in db.calls}

    assert await depths_of_a_request() == {32}  # 64 // 2 actors: nobody is reading
    with priority.answering():
        assert await depths_of_a_request() == {4}  # 8 // 2 actors
    assert await depths_of_a_request() == {4}  # within HOLD_SECONDS of the answer
    now[0] += HOLD_SECONDS
    assert await depths_of_a_request() == {32}
    await ingest.close(1.0)


async def test_without_a_depth_for_answers_queries_change_nothing() -> None:
    db, priority = ScriptedDatabase(), ReadPriority()
    ingest = pipeline(db, priority=priority, actors=2, max_inflight_writes=64)  # the default: 0, off
    ingest.start()
    with priority.answering():
        await ingest.submit(events(10))
    assert {depth for _, depth, _ in db.calls} == {32}
    await ingest.close(1.0)


async def test_a_request_bigger_than_a_flush_keeps_each_players_events_in_one_flush() -> None:
    db = ScriptedDatabase()
    ingest = pipeline(db, actors=2, flush_events=10)
    ingest.start()
    # 60 events of 12 players, interleaved as a shuffled batch arrives: p0 p1 ... p11 p0 p1 ...
    interleaved = [Event("start", f"p{i % 12}", uuid.uuid4(), i * 1000, "FI") for i in range(60)]
    await ingest.submit(interleaved)
    flushes = [statements for statements, _, _ in db.calls if not statements[0].startswith("mark")]
    assert sorted(player for flush in flushes for player in flush) == sorted(e.player_id for e in interleaved)
    flushes_of = {player: sum(player in flush for flush in flushes) for player in {e.player_id for e in interleaved}}
    # 5 events each, at most 10 per flush: each player can fit in one, and in arrival order would
    # have been spread over several.
    assert set(flushes_of.values()) == {1}
    await ingest.close(1.0)
