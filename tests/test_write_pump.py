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
