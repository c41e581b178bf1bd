"""This replica's starts on their way through the stream: queued, being appended, appended but not read back."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Sequence

from daemon.core.events import Event
from daemon.live.stream import ORIGIN, StreamId


class Batch:
    """The starts of one flush (one stream entry); `local` once this replica's hub has had them directly."""

    __slots__ = ("starts", "local", "id")

    def __init__(self, starts: list[Event], local: bool) -> None:
        self.starts = starts
        self.local = local
        self.id = ORIGIN  # set once appended


class HeldStarts:
    """Starts that must still reach this replica's hub through the stream, at most `capacity` of them.

    While the bus is up, the reader brings a replica's own starts back to its hub: until then they
    are held here, so that if Redis goes away first they can go to the hub directly, in order
    (`undelivered`). A batch the hub already had directly (`local`) is appended for the other
    replicas only and leaves as soon as it is sent.
    """

    __slots__ = ("capacity", "_queue", "_in_flight", "_unconfirmed", "_count")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queue: collections.deque[Batch] = collections.deque()  # not sent yet
        self._in_flight: list[Batch] = []  # being appended
        self._unconfirmed: collections.deque[Batch] = collections.deque()  # appended, not read back yet, in id order
        self._count = 0

    def __len__(self) -> int:
        """Starts held."""
        return self._count

    @property
    def queued(self) -> bool:
        return bool(self._queue)

    def put(self, starts: list[Event], local: bool) -> bool:
        """Queue one flush's starts; False (nothing queued) when they do not fit."""
        if self._count + len(starts) > self.capacity:
            return False
        self._queue.append(Batch(starts, local))
        self._count += len(starts)
        return True

    def send(self, entries: int) -> list[Batch]:
        """The next `entries` queued batches, now in flight (one append at a time)."""
        self._in_flight = [self._queue.popleft() for _ in range(min(entries, len(self._queue)))]
        return self._in_flight

    def sent(self, ids: Sequence[StreamId], read_up_to: StreamId | None) -> int:
        """The batches in flight were appended with `ids`; returns their starts."""
        starts = 0
        for batch, entry_id in zip(self._in_flight, ids, strict=True):
            starts += len(batch.starts)
            if batch.local or (read_up_to is not None and entry_id <= read_up_to):
                self._count -= len(batch.starts)  # in the hub already, or read back before the reply came
            else:
                batch.id = entry_id
                self._unconfirmed.append(batch)
        self._in_flight = []
        return starts

    def not_sent(self) -> tuple[int, list[list[Event]]]:
        """The batches in flight failed to append (not retried): their starts, and those the hub has not had."""
        batches, self._in_flight = self._in_flight, []
        failed = sum(len(batch.starts) for batch in batches)
        self._count -= failed
        return failed, _take_undelivered(batches)

    def read(self, position: StreamId) -> None:
        """The reader got the stream up to `position`: appended batches up to there are in the hub."""
        while self._unconfirmed and self._unconfirmed[0].id <= position:
            self._count -= len(self._unconfirmed.popleft().starts)

    def undelivered(self) -> list[list[Event]]:
        """The stream will not bring them back (Redis is gone): every batch the hub has not had, in order.

        Appended ones are forgotten; queued and in-flight ones stay, to be appended for the others.
        """
        starts = _take_undelivered(itertools.chain(self._unconfirmed, self._in_flight, self._queue))
        self._count -= sum(len(batch.starts) for batch in self._unconfirmed)
        self._unconfirmed.clear()
        return starts


def _take_undelivered(batches: Iterable[Batch]) -> list[list[Event]]:
    undelivered: list[list[Event]] = []
    for batch in batches:
        if not batch.local:
            batch.local = True
            undelivered.append(batch.starts)
    return undelivered
