"""The write pump keeps at most `concurrency` statements in flight and reports each statement's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cql.driver import Database


class FakeResponse:
    """Completes on the event loop shortly after it was sent, like the driver's answer from its own thread."""

    _timer = None  # what `release()` looks at

    def __init__(self, session: FakeSession, statement: Any) -> None:
        self._session = session
        self._statement = statement

    def add_callbacks(
        self, callback: Callable[..., None], errback: Callable[..., None], callback_args: tuple[Any, ...] = (),
        errback_args: tuple[Any, ...] = (),
    ) -> None:
        def answer() -> None:
            self._session.in_flight -= 1
            if self._statement in self._session.failing:
                errback(RuntimeError(f"{self._statement} failed"), *errback_args)
            else:
                callback(None, *callback_args)

        self._session.loop.call_later(0.001, answer)


class FakeSession:
    def __init__(self, loop: asyncio.AbstractEventLoop, failing: set[Any]) -> None:
        self.loop = loop
        self.failing = failing
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[Any] = []

    def execute_async(self, statement: Any) -> FakeResponse:
        self.sent.append(statement)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return FakeResponse(self, statement)


@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_no_more_than_concurrency_statements_are_in_flight(concurrency: int) -> None:
    session = FakeSession(asyncio.get_running_loop(), failing={7, 11})
    db = Database(cluster=None, session=session, keyspace="ks")  # type: ignore[arg-type]
    statements = list(range(40))
    errors = await db.execute_many(statements, concurrency)  # type: ignore[arg-type]
    assert session.most_in_flight == concurrency
    assert sorted(session.sent) == statements  # each sent once
    assert [index for index, error in enumerate(errors) if error is not None] == [7, 11]
    assert session.in_flight == 0


async def test_a_depth_function_is_asked_again_as_statements_complete() -> None:
    session = FakeSession(asyncio.get_running_loop(), failing=set())
    db = Database(cluster=None, session=session, keyspace="ks")  # type: ignore[arg-type]
    depths = [8] * 12 + [2] * 20 + [6] * 200  # asked once per send attempt and completion
    in_flight_when_sent: list[tuple[int, int]] = []
    allowed = 8

    def depth() -> int:
        nonlocal allowed
        allowed = depths.pop(0) if depths else 6
        return allowed

    def execute_async(statement: Any) -> FakeResponse:
        response = FakeSession.execute_async(session, statement)
        in_flight_when_sent.append((session.in_flight, allowed))
        return response

    session.execute_async = execute_async  # type: ignore[method-assign]
    statements = list(range(60))
    errors = await db.execute_many(statements, depth)  # type: ignore[arg-type]
    assert errors == [None] * 60 and sorted(session.sent) == statements
    assert all(in_flight <= allowed for in_flight, allowed in in_flight_when_sent)
    seen = [in_flight for in_flight, _ in in_flight_when_sent]
    assert max(seen[:8]) == 8  # the full depth at first...
    assert 6 in seen[-20:]  # ...and again once it rose, after a stretch at 2
    assert any(allowed == 2 for _, allowed in in_flight_when_sent)
