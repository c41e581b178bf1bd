"""Exact start counts over a route's windows at the service's now, one count for identical concurrent requests."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from cql.exact import ExactCounts, Window, WindowCounts
from daemon.core.clock import Clock
from daemon.core.coalesce import Coalescer

T = TypeVar("T")
WindowsAt = Callable[[int], Sequence[Window]]
"""The windows a request counts, given now (epoch ms); the same function for every request of one key."""
Shape = Callable[[int, WindowCounts], T]
"""The answer built from (now, counts); shared by every request of one key, so never mutated after."""


class SharedCounts:
    """Counts for dashboards that many people watch: requests with the same key (route and parameters)
    arriving together share one exact count, whose "now" is read when it begins (after they all arrived)."""

    __slots__ = ("_clock", "_coalescer", "_counts")

    def __init__(self, counts: ExactCounts, clock: Clock) -> None:
        self._counts = counts
        self._clock = clock
        self._coalescer: Coalescer[Hashable, Any] = Coalescer()

    async def answer(self, key: Hashable, windows_at: WindowsAt, shape: Shape[T]) -> T:
        """shape(now, counts of windows_at(now)), where now is the instant the (shared) count began.

        `key` must name everything the answer depends on (route and parameters): requests with equal
        keys get the same object.
        """

        async def compute() -> T:
            now_ms = self._clock.now_ms()
            return shape(now_ms, await self._counts.count(windows_at(now_ms)))

        answer: T = await self._coalescer.run(key, compute)
        return answer
