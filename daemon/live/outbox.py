"""A connection's bounded outbox: frames waiting for its socket, and gaps where starts were dropped."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from daemon.live.messages import lagged_message

MAX_PENDING_REPLIES = 16  # per connection; a client that stops reading stops being read (TCP back-pressure)


class Gap:
    """Where starts were dropped; sent as a `lagged` message once the writer reaches it."""

    __slots__ = ("dropped", "countries")

    def __init__(self) -> None:
        self.dropped = 0
        self.countries: collections.Counter[str] = collections.Counter()

    def add(self, countries: Sequence[str]) -> None:
        self.dropped += len(countries)
        self.countries.update(countries)

    def message(self) -> bytes:
        return lagged_message(self.dropped, self.countries)


class Selection:
    """The starts of one round that one subscription wants: their countries and frames, joined once."""

    __slots__ = ("countries", "frames", "_joined")

    def __init__(self, countries: list[str], frames: list[bytes]) -> None:
        self.countries = countries
        self.frames = frames
        self._joined: bytes | None = None

    @property
    def joined(self) -> bytes:
        """All frames as one buffer; computed by the first subscriber that needs it, shared by the rest."""
        if self._joined is None:
            self._joined = b"".join(self.frames)
        return self._joined


class Outbox:
    """One connection's frames waiting for its socket, in order.

    Session starts are bounded by `capacity`: what does not fit is dropped and counted in a `Gap`
    placed where the starts are missing. Replies and gap notices are never dropped; replies are
    bounded by their sender waiting for room, gaps by the starts between them.
    """

    __slots__ = ("capacity", "debt", "_items", "_starts", "_replies", "_gap", "_ready", "_reply_room", "_closed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.debt = 0  # starts dropped since the outbox was last emptied
        self._items: list[bytes | Gap] = []
        self._starts = 0
        self._replies = 0
        self._gap: Gap | None = None  # open while no start was accepted after it
        self._ready = asyncio.Event()
        self._reply_room = asyncio.Event()
        self._reply_room.set()
        self._closed = False

    @property
    def empty(self) -> bool:
        return not self._items

    def offer(self, selection: Selection) -> int:
        """Queue the starts that fit, drop the rest; returns how many were dropped. Never waits."""
        if self._closed:
            return 0
        wanted = len(selection.frames)
        room = self.capacity - self._starts
        if room >= wanted:
            self._accept(selection.joined, wanted)
            return 0
        if room > 0:
            self._accept(b"".join(selection.frames[:room]), room)
        dropped = selection.countries[room:]
        if self._gap is None:
            self._gap = Gap()
            self._items.append(self._gap)
        self._gap.add(dropped)
        self.debt += len(dropped)
        self._ready.set()
        return len(dropped)

    def _accept(self, frames: bytes, starts: int) -> None:
        self._items.append(frames)
        self._starts += starts
        self._gap = None
        self._ready.set()

    def push_reply(self, frame: bytes) -> None:
        """Queue a reply; callers wait for `reply_room` first, except for the one greeting."""
        if self._closed:
            return
        self._items.append(frame)
        self._replies += 1
        if self._replies >= MAX_PENDING_REPLIES:
            self._reply_room.clear()
        self._ready.set()

    async def reply_room(self) -> None:
        await self._reply_room.wait()

    async def wait(self) -> bool:
        """Until something is queued (True) or the outbox is closed and empty (False)."""
        while not self._items:
            if self._closed:
                return False
            self._ready.clear()
            await self._ready.wait()
        return True

    def take(self) -> list[bytes | Gap]:
        """Everything queued, in order; the outbox is empty (and caught up) afterwards."""
        items, self._items = self._items, []
        self._starts = self._replies = self.debt = 0
        self._gap = None  # later drops start a new gap behind what is taken now
        self._reply_room.set()
        return items

    def close(self, flush: bool) -> None:
        """Take nothing more; with `flush`, queued items are still handed out, else they are discarded."""
        self._closed = True
        if not flush:
            self.take()
        self._ready.set()
        self._reply_room.set()  # nobody may wait for room that will never come
