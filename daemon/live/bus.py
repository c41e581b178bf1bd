"""One live feed across replicas: every replica appends its stored starts to a Redis stream and feeds its hub from it.

With `live.bus` set, the ingest actors' listener is `LiveBus.publish` instead of `LiveHub.publish`:
a flush's starts are queued (never awaited) and appended by one task, one stream entry per flush
(`XADD … MAXLEN ~ live.bus_maxlen`, pipelined). One reader task per replica reads the stream with
`XREAD BLOCK` and is the only feeder of the local hub, so this replica's starts and everyone
else's reach its clients in one order (the stream's), each replica's in that replica's order.

Redis is never on the ingest path. While it is unreachable the bus is down: the replica's own
starts go straight to its hub (local fallback), the reader reconnects with backoff and resumes
after the last entry it read, and /readyz shows the state. `_went_down` says how the two paths
into the hub still deliver each start once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from daemon.core.config import LiveConfig
from daemon.core.events import Event
from daemon.core.metrics import count_live_bus_error
from daemon.live.busstate import BusState
from daemon.live.dedup import RecentIds
from daemon.live.held import HeldStarts
from daemon.live.hub import LiveHub
from daemon.live.redis_client import FAILED, UNREACHABLE, client, safe_url
from daemon.live.stream import FIELD, StreamId, decode_starts, encode_starts, resume_point

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000  # XREAD BLOCK: an idle reader comes back this often (and then sees a reconnect request)
READ_ENTRIES = 100  # entries (flushes) per XREAD
APPEND_ENTRIES = 200  # entries (flushes) per pipelined round trip of XADDs
FIRST_RETRY_DELAY = 0.05  # seconds before the reader reconnects; doubles up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = 1.0
CLOSE_FLUSH_SECONDS = 2.0  # on shutdown, queued starts get this long to reach the stream
WARN_INTERVAL = 10.0  # seconds between repeated warnings of one kind (overflow, refused appends, foreign entries)

_replicas = itertools.count(1)


class LiveBus:
    """This replica's end of the shared feed: the listener that appends, the reader that feeds the hub."""

    __slots__ = (
        "name", "state", "appended", "received", "duplicates", "local", "overflowed", "failed",
        "_hub", "_url", "_stream", "_maxlen", "_recent", "_held", "_writer", "_reader", "_position", "_reconnect",
        "_wake", "_tasks", "_closed", "_warned",
    )

    def __init__(self, hub: LiveHub, config: LiveConfig) -> None:
        self.name = f"pss-{socket.gethostname()}-{os.getpid()}-{next(_replicas)}"  # its connections' CLIENT names
        self.state = BusState()
        # Counts of starts: appended to the stream, read from it, skipped as already delivered, delivered
        # without the stream (fallback), beyond `bus_buffer`, failed to append.
        self.appended = self.received = self.duplicates = self.local = self.overflowed = self.failed = 0
        self._hub = hub
        self._url = config.bus
        self._stream = config.bus_stream
        self._maxlen = config.bus_maxlen
        self._recent = RecentIds(config.dedup_window)
        self._held = HeldStarts(config.bus_buffer)
        self._writer = client(self._url, f"{self.name}-append")
        self._reader = client(self._url, f"{self.name}-read")
        self._position: StreamId | None = None  # the reader's XREAD continues after this id
        self._reconnect = True  # the reader must find its resume point before reading
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._warned: dict[str, float] = {}

    async def start(self) -> None:
        """Connect once (the daemon starts either way: a failure is `down`), then run the reader and the appender."""
        try:
            await self._resume()
        except FAILED as exc:
            self._went_down(exc)
        self._tasks = [
            asyncio.create_task(self._append_loop(), name=f"live-bus-appender-{self.name}"),  # first: see close()
            asyncio.create_task(self._read_loop(), name=f"live-bus-reader-{self.name}"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_death)

    async def close(self, flush_seconds: float = CLOSE_FLUSH_SECONDS) -> None:
        """Take no more starts; let the queued ones reach the stream within `flush_seconds`, then stop."""
        self._closed = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks[:1], timeout=flush_seconds)  # the appender ends once its queue is empty
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._writer.aclose()
        await self._reader.aclose()

    # --- the listener and the way into the hub ------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Listener for events Cassandra acknowledged: queue their starts for the stream; never waits."""
        starts = [event for event in events if event.country is not None]
        if not starts:
            return
        local = not self.state.up or self._closed
        if local:
            self._feed_locally(starts)  # fallback: the reader is not feeding the hub now
        if self._closed:
            return
        if self._held.put(starts, local):
            self._wake.set()
            return
        # Redis is slower than ingest: these skip the stream (the other replicas miss them) and reach this
        # replica's clients directly, ahead of held starts the stream has yet to bring back.
        self.overflowed += len(starts)
        if not local:
            self._feed_locally(starts)
        self._warn("overflow", "live bus: %d starts held for Redis; %d more reach only this replica's clients",
                   len(self._held), len(starts))

    def _feed_locally(self, starts: Sequence[Event]) -> None:
        self.local += len(starts)
        self._feed(starts)

    def _feed(self, starts: Sequence[Event]) -> None:
        """Into the hub, each session once (see RecentIds)."""
        fresh = [start for start in starts if self._recent.add(start.session_id)]
        self.duplicates += len(starts) - len(fresh)
        if fresh:
            self._hub.publish(fresh)

    # --- the appender: one pipelined round trip at a time ---------------------------------------------

    async def _append_loop(self) -> None:
        while True:
            while not self._held.queued:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            batches = self._held.send(APPEND_ENTRIES)
            try:
                async with self._writer.pipeline(transaction=False) as pipe:
                    for batch in batches:
                        payload = encode_starts(batch.starts)
                        pipe.xadd(self._stream, {FIELD: payload}, maxlen=self._maxlen, approximate=True)
                    ids = await pipe.execute()
            except UNREACHABLE as exc:
                self._went_down(exc)  # which hands the batches in flight to the hub
                self._not_sent()  # and they are not retried: stale starts help nobody
            except Exception as exc:  # Redis refused (out of memory, the key holds another type), or a bug
                count_live_bus_error("append")
                self._warn("append", "live bus: appending to %s failed: %s: %s", self._stream, type(exc).__name__, exc)
                self._not_sent()
            else:
                self.appended += self._held.sent([StreamId.parse(entry_id) for entry_id in ids], self._position)

    def _not_sent(self) -> None:
        failed, undelivered = self._held.not_sent()
        self.failed += failed
        for starts in undelivered:
            self._feed_locally(starts)

    # --- the reader: the hub's only feeder while the bus is up -----------------------------------------

    async def _read_loop(self) -> None:
        """XREAD BLOCK after the last id read; on a failure: down, wait (backoff), reconnect and resume."""
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                if self._reconnect:
                    await self._resume()
                # RESP2: [[stream, [(id, {field: value}), ...]]], or None when the block timed out.
                replies: Any = await self._reader.xread(
                    {self._stream: str(self._position)}, count=READ_ENTRIES, block=READ_BLOCK_MS
                )
            except FAILED as exc:  # unreachable, or an error answer (WRONGTYPE: the key is no stream)
                self._went_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = FIRST_RETRY_DELAY
            try:
                for _, entries in replies or ():
                    self._receive(entries)
            except Exception:  # a bug here must not end the feed
                log.exception("live bus: could not take entries from %s", self._stream)

    async def _resume(self) -> None:
        """(Re)connected: find where to read from (`resume_point`), and count as up."""
        newest: Any = await self._reader.xrevrange(self._stream, "+", "-", count=1)
        tail = StreamId.parse(newest[0][0]) if newest else None
        self._position = resume_point(self._position, tail)
        self._reconnect = False
        self._came_up()

    def _receive(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> None:
        wanted = self._hub.connections > 0  # a replica without clients only follows the stream
        starts: list[Event] = []
        for entry_id, fields in entries:
            self._position = StreamId.parse(entry_id)
            if wanted:
                try:
                    starts.extend(decode_starts(fields[FIELD]))
                except (KeyError, ValueError) as exc:
                    count_live_bus_error("entry")
                    self._warn("entry", "live bus: skipped entry %s of %s: %s", self._position, self._stream, exc)
        self.received += len(starts)
        self._feed(starts)
        if self._position is not None:
            self._held.read(self._position)

    # --- state -----------------------------------------------------------------------------------------

    def _came_up(self) -> None:
        after = "" if self.state.state == "connecting" else f" after {self.state.seconds():.1f}s down"
        if not self.state.change("up"):
            return
        log.info("live bus: up%s: %s, stream %s, reading after %s", after, safe_url(self._url), self._stream,
                 self._position)

    def _went_down(self, exc: BaseException) -> None:
        """Redis is unreachable: from now on this replica's clients get its own starts straight from it.

        The starts the stream was to bring back (queued, being appended, or appended and not read
        yet) go to the hub now, in order, so none of this replica's is late or missing. Two paths
        may then carry one start: after a reconnect the reader resumes from its last id and reads
        what was appended meanwhile, including starts the fallback delivered (and an XADD that
        failed on a broken connection may still have been applied). Both paths go through `_feed`,
        one `RecentIds` window keyed by session id, so each start reaches a client once.
        """
        self._reconnect = True
        count_live_bus_error("down")
        if not self.state.change("down", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__):
            return
        log.warning("live bus: Redis unreachable (%s): this replica's clients get only its own starts until it is back",
                    self.state.error)
        for starts in self._held.undelivered():
            self._feed_locally(starts)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._warned.get(kind)
        if last is None or now - last >= WARN_INTERVAL:
            self._warned[kind] = now
            log.warning(message, *args)

    def health(self) -> dict[str, Any]:
        """For /readyz: the state and since when, where the reader is, and the counts of starts."""
        return {
            **self.state.report(),
            "stream": self._stream,
            "position": None if self._position is None else str(self._position),
            "held": len(self._held),
            "appended": self.appended,
            "received": self.received,
            "duplicates": self.duplicates,
            "local": self.local,
            "overflowed": self.overflowed,
            "failed": self.failed,
        }


def _report_death(task: asyncio.Task[None]) -> None:
    """The loops catch what they can survive; anything else ends the feed, and must not go unnoticed."""
    if not task.cancelled() and task.exception() is not None:
        log.error("live bus: %s died; the feed stops until a restart", task.get_name(), exc_info=task.exception())
