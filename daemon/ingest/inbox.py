"""An actor's inbox of parcels and the ticket a request waits on until its events are durable."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.core.events import Event


class InboxClosed(Exception):
    """The actor is shutting down and takes no more events."""


class Ticket:
    """Completes when every parcel of one request is written, or records the first failure.

    The submitter holds one count while it queues parcels (parcels may finish before the last is
    queued) and gives it back with `parcel_done(None)`. Results are passed with `set_result`,
    never `set_exception`: a client that went away leaves a ticket nobody
    awaits, and that must not log "exception never retrieved".
    """

    __slots__ = ("_future", "_pending")

    def __init__(self) -> None:
        self._future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._pending = 1

    def add_parcel(self) -> None:
        self._pending += 1

    def parcel_done(self, error: BaseException | None) -> None:
        if self._future.done():
            return
        if error is not None:
            self._future.set_result(error)
            return
        self._pending -= 1
        if self._pending == 0:
            self._future.set_result(None)

    async def wait(self) -> BaseException | None:
        """None when every parcel is durably stored, else the first error."""
        return await self._future


@dataclass(frozen=True, slots=True)
class Parcel:
    """Events of one request bound for one actor, with the ticket to report to and when the request arrived
    (time.monotonic(), before admission: how long its events waited for their write is a metric)."""

    events: Sequence[Event]
    ticket: Ticket
    arrived: float = field(default_factory=time.monotonic)


class Inbox:
    """An actor's FIFO of parcels. Unbounded by itself: `Admission` bounds what all inboxes hold."""

    __slots__ = ("_parcels", "_size", "_closed", "_changed")

    def __init__(self) -> None:
        self._parcels: deque[Parcel] = deque()
        self._size = 0
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def size(self) -> int:
        return self._size

    async def put(self, parcel: Parcel) -> None:
        async with self._changed:
            if self._closed:
                raise InboxClosed
            self._parcels.append(parcel)
            self._size += len(parcel.events)
            self._changed.notify_all()

    async def take(self, max_events: int, linger: float) -> list[Parcel] | None:
        """Wait for a parcel, linger up to `linger` s for more, return up to `max_events`.

        Returns None once the inbox is closed and empty.
        """
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._parcels) or self._closed)
            if not self._parcels:
                return None
            if self._size < max_events and linger > 0 and not self._closed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._size >= max_events or self._closed), linger
                    )
                except TimeoutError:
                    pass
            taken = [self._parcels.popleft()]
            count = len(taken[0].events)
            while self._parcels and count + len(self._parcels[0].events) <= max_events:
                parcel = self._parcels.popleft()
                taken.append(parcel)
                count += len(parcel.events)
            self._size -= count
            return taken

    async def close(self) -> None:
        """Refuse new parcels; those already queued are still handed out by `take`."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    def drain(self) -> list[Parcel]:
        """Remove and return whatever is still queued (used when shutdown runs out of time)."""
        parcels = list(self._parcels)
        self._parcels.clear()
        self._size = 0
        return parcels
