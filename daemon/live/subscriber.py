"""One live connection: its subscription, its outbox and the writer task that owns its sending side."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from daemon.live.closecodes import NORMAL_CLOSURE
from daemon.live.frames import text_frame
from daemon.live.messages import error_message, subscribed_message
from daemon.live.outbox import Gap, Outbox, Selection
from daemon.live.subscriptions import Countries, add_countries, remove_countries

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL = 10.0  # seconds between "dropped" log lines per connection
HIGH_WATER_BYTES = 64 * 1024
"""Unsent bytes a connection's socket may hold before its messages wait in its outbox instead."""
DRAIN_POLL_SECONDS = 0.02  # how often a blocked writer looks at its socket again (only while blocked)


class Peer(Protocol):
    """The sending side of one client connection (web/raw_websocket.py adapts an aiohttp websocket)."""

    def write(self, frames: bytes) -> None:
        """Hand whole websocket frames to the socket without waiting; ConnectionError once it is gone."""

    def backlog(self) -> int:
        """Bytes written but not yet taken by the operating system."""

    async def close(self, code: int, reason: str) -> None: ...


class Subscriber:
    """One live connection: its countries, its outbox and the writer task that owns its sending side.

    While the socket keeps up, a round's frames are written at once (no task switch); once the
    socket holds more than `HIGH_WATER_BYTES`, frames queue in the outbox and the writer sends them
    in one write when the socket has drained.
    """

    __slots__ = (
        "id", "name", "countries", "dropped", "close_code", "close_reason",
        "_peer", "_outbox", "_task", "_scope", "_deadline", "_last_drop_log",
    )

    def __init__(self, id: int, name: str, peer: Peer, countries: Countries, queue_size: int) -> None:
        self.id = id
        self.name = name
        self.countries = countries
        self.dropped = 0
        self.close_code = NORMAL_CLOSURE
        self.close_reason = ""
        self._peer = peer
        self._outbox = Outbox(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._scope: asyncio.Timeout | None = None  # set while the writer runs; shut() moves its deadline
        self._deadline: float | None = None  # when shut() wants the writer to stop sending
        self._last_drop_log = -DROP_LOG_INTERVAL

    def __str__(self) -> str:
        return f"#{self.id} ({self.name})"

    @property
    def debt(self) -> int:
        return self._outbox.debt

    def start(self) -> None:
        self._send_reply(subscribed_message(self.countries))
        self._task = asyncio.create_task(self._write(), name=f"live-writer-{self.id}")

    def deliver(self, selection: Selection) -> int:
        """Send or queue one round's starts for this connection; returns how many were dropped."""
        if self._can_write_now():
            self._write_now(selection.joined)
            return 0
        dropped = self._outbox.offer(selection)
        self.dropped += dropped
        return dropped

    async def subscribe(self, countries: Countries) -> None:
        await self._change(add_countries, countries)

    async def unsubscribe(self, countries: Countries) -> None:
        await self._change(remove_countries, countries)

    async def _change(self, rule: _Rule, countries: Countries) -> None:
        await self._outbox.reply_room()
        # Changing the filter and sending the confirmation in one step means every start after a
        # `subscribed` message was selected with exactly that set.
        self.countries = rule(self.countries, countries)
        self._send_reply(subscribed_message(self.countries))

    async def reply_error(self, reason: str) -> None:
        await self._outbox.reply_room()
        self._send_reply(error_message(reason))

    def _send_reply(self, payload: bytes) -> None:
        frame = text_frame(payload)
        if self._can_write_now():
            self._write_now(frame)
        else:
            self._outbox.push_reply(frame)

    def _can_write_now(self) -> bool:
        """Nothing queued ahead (order), not shutting, and the socket is keeping up."""
        return self._outbox.empty and self._deadline is None and self._peer.backlog() <= HIGH_WATER_BYTES

    def _write_now(self, frames: bytes) -> None:
        try:
            self._peer.write(frames)
        except ConnectionError:
            pass  # the peer went away; its reading side sees that too and unsubscribes

    def shut(self, code: int, reason: str, flush_seconds: float = 0.0) -> None:
        """Close with `code`: at once, or after queued messages went out (at most `flush_seconds`)."""
        if self._deadline is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._outbox.close(flush=flush_seconds > 0)
        self._deadline = asyncio.get_running_loop().time() + flush_seconds
        if self._scope is not None:
            self._scope.reschedule(self._deadline)

    async def stop(self) -> None:
        """Shut (normal closure unless already shutting) and wait until the writer has closed the peer."""
        self.shut(NORMAL_CLOSURE, "")
        if self._task is not None:
            await self._task

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])

    async def _write(self) -> None:
        """Send what queued up, in one write per drain, until the outbox is closed and empty or shut() interrupts."""
        try:
            async with asyncio.timeout(self._deadline) as self._scope:
                while await self._outbox.wait():
                    while self._peer.backlog() > HIGH_WATER_BYTES:
                        await asyncio.sleep(DRAIN_POLL_SECONDS)  # noqa: ASYNC110 -- no event for "socket drained"
                    self._peer.write(b"".join(self._render(item) for item in self._outbox.take()))
        except TimeoutError:
            pass  # shut() moved the deadline: the peer is evicted, or did not take the flush in time
        except ConnectionError:
            pass  # the peer went away; the reading side sees it too and unsubscribes
        except Exception:
            log.exception("live: writer of %s failed", self)
        finally:
            self._scope = None
            self._outbox.close(flush=False)  # nothing will send any more: release a reader waiting for room
        await self._peer.close(self.close_code, self.close_reason)

    def _render(self, item: bytes | Gap) -> bytes:
        if isinstance(item, bytes):
            return item
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning("live: %s lagged: %d starts dropped (%d in total)", self, item.dropped, self.dropped)
        return text_frame(item.message())


class _Rule(Protocol):
    def __call__(self, current: Countries, countries: Countries, /) -> Countries: ...
