"""One computation for identical concurrent requests, begun only after every request sharing it arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Shares one run of a computation among callers asking for the same key at about the same time.

    A caller never gets the result of a run that began before it arrived: that run may have read
    before a write the caller saw acknowledged. It joins the next run instead, which begins as soon
    as the one in flight ends. So N identical requests arriving together cost one or two runs
    instead of N, and each answer is as fresh as one computed for that request alone.
    """

    __slots__ = ("_next", "_running")

    def __init__(self) -> None:
        self._next: dict[K, asyncio.Task[V]] = {}  # not begun yet: callers arriving now join it
        self._running: dict[K, asyncio.Task[V]] = {}  # begun: callers arriving now wait for the next

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The result of a run of `compute` for `key` that begins after this call (shared with others)."""
        task = self._next.get(key)
        if task is None:
            task = asyncio.create_task(self._after_running(key, compute))
            # Retrieved here so a run whose callers all went away logs no "never retrieved" error.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._next[key] = task
        # Shielded: a caller that goes away (a closed connection) does not cancel the others' run.
        return await asyncio.shield(task)

    async def _after_running(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is not None:
            await asyncio.wait([running])
        del self._next[key]  # from here on, callers join the run after this one
        self._running[key] = asyncio.current_task()  # type: ignore[assignment]
        try:
            return await compute()
        finally:
            del self._running[key]
