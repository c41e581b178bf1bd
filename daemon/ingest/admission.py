"""All-or-nothing admission of a request's events into the actors, first come first served."""

from __future__ import annotations

import asyncio
from collections import deque


class Overloaded(Exception):
    """No room for the request's events within the allowed wait: the caller answers 503 with Retry-After."""


class Admission:
    """A weighted FIFO semaphore over the events accepted but not yet written.

    A request reserves room for all of its events before any of them is queued, so a request that
    times out leaves no half-queued work behind; without that, concurrent 100,000-event requests
    each filled part of the inboxes, timed out, were retried, and livelocked (measured: every
    batch of four concurrent clients still 503 after retries). First come, first served keeps
    one big request from being starved by a stream of small ones.
    """

    __slots__ = ("capacity", "_free", "_waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def queued(self) -> int:
        """Events admitted and not yet released."""
        return self.capacity - self._free

    async def acquire(self, weight: int, timeout: float) -> None:
        """Reserve room for `weight` events, waiting up to `timeout` seconds behind earlier requests.

        Config validation keeps `capacity` at least the largest request, so every request fits.
        """
        if not self._waiters and self._free >= weight:
            self._free -= weight
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((weight, waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if waiter.done():  # granted at the very moment the wait ran out: keep it
                return
            self._waiters.remove((weight, waiter))
            waiter.cancel()
            self._grant()  # a big waiter leaving may unblock smaller ones behind it
            raise Overloaded from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(weight)
            else:
                self._waiters.remove((weight, waiter))
                self._grant()
            raise

    def release(self, weight: int) -> None:
        self._free += weight
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._free >= self._waiters[0][0]:
            weight, waiter = self._waiters.popleft()
            self._free -= weight
            waiter.set_result(None)
