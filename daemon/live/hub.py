"""Live feed: fans stored session starts out to subscribers, one socket write per client per round."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import orjson

from daemon.core.clock import format_instant
from daemon.core.events import Event, ms_to_datetime
from daemon.live.frames import text_frame

log = logging.getLogger(__name__)

# Close codes (RFC 6455 section 7.4; 4000-4999 are for applications).
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
LAGGING = 4000
"""Our code: the client dropped more than `LAG_LIMIT_FACTOR * queue_size` starts without catching up."""

LAG_LIMIT_FACTOR = 10
MAX_PENDING_REPLIES = 16  # per connection; a client that stops reading stops being read (TCP back-pressure)
SHUTDOWN_DRAIN_SECONDS = 2.0  # on shutdown, queued starts get this long to go out before the 1001 close
DROP_LOG_INTERVAL = 10.0  # seconds between "dropped" log lines per connection
HIGH_WATER_BYTES = 64 * 1024
"""Unsent bytes a connection's socket may hold before its messages wait in its outbox instead."""
DRAIN_POLL_SECONDS = 0.02  # how often a blocked writer looks at its socket again (only while blocked)

Countries = frozenset[str] | None
"""A subscription: a set of ISO 3166-1 alpha-2 codes, or None for every country."""


class Peer(Protocol):
    """The sending side of one client connection (web/live.py adapts an aiohttp websocket)."""

    def write(self, frames: bytes) -> None:
        """Hand whole websocket frames to the socket without waiting; ConnectionError once it is gone."""

    def backlog(self) -> int:
        """Bytes written but not yet taken by the operating system."""

    async def close(self, code: int, reason: str) -> None: ...


class SubscriptionError(ValueError):
    """The requested change makes no sense for the current subscription; the client gets an error message."""


def add_countries(current: Countries, countries: Countries) -> Countries:
    """`subscribe`: None subscribes to all; codes are added (already included when subscribed to all)."""
    if current is None or countries is None:
        return None
    return current | countries


def remove_countries(current: Countries, countries: Countries) -> Countries:
    """`unsubscribe`: None unsubscribes from everything (empty set); codes are removed from an explicit set."""
    if countries is None:
        return frozenset()
    if current is None:
        raise SubscriptionError(
            "subscribed to all countries: send unsubscribe with countries null (nothing), "
            "then subscribe to the countries you want"
        )
    return current - countries


def start_message(event: Event) -> bytes:
    return orjson.dumps(
        {
            "type": "session_start",
            "country": event.country,
            "player_id": event.player_id,
            "session_id": event.session_id,
            "ts": format_instant(ms_to_datetime(event.ts_ms)),
        }
    )


def subscribed_message(countries: Countries) -> bytes:
    return orjson.dumps({"type": "subscribed", "countries": None if countries is None else sorted(countries)})


def error_message(reason: str) -> bytes:
    return orjson.dumps({"type": "error", "error": reason})


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
        # Per-country counts let a client (the dashboard) keep exact totals despite the gap.
        return orjson.dumps(
            {"type": "lagged", "dropped": self.dropped, "countries": dict(sorted(self.countries.items()))}
        )


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


class _Round:
    """The starts gathered for one fan-out: each encoded once, selected once per distinct subscription."""

    __slots__ = ("every", "_selections")

    def __init__(self) -> None:
        self.every = Selection([], [])
        self._selections: dict[frozenset[str], Selection] = {}

    def add(self, events: Sequence[Event]) -> None:
        countries: list[str] = []
        frames: list[bytes] = []
        for event in events:
            if event.country is not None:
                frames.append(text_frame(start_message(event)))  # may raise: then nothing of `events` is added
                countries.append(event.country)
        self.every.countries.extend(countries)
        self.every.frames.extend(frames)

    def select(self, wanted: Countries) -> Selection:
        if wanted is None:
            return self.every
        selection = self._selections.get(wanted)
        if selection is None:
            picked = [i for i, country in enumerate(self.every.countries) if country in wanted]
            selection = Selection([self.every.countries[i] for i in picked], [self.every.frames[i] for i in picked])
            self._selections[wanted] = selection
        return selection


class LiveHub:
    """Hands every stored session start to the subscribers that want its country; never blocks ingest.

    Starts published within `interval` seconds are fanned out together in one round: each is
    encoded once, and each client gets the round in one socket write, so the cost is per client
    and round rather than per client and start (0 = a round per publish).

    Each subscriber has an outbox of `queue_size` starts. A full outbox drops starts and the client
    later gets `{"type": "lagged", "dropped": n, ...}` where they are missing. A client that drops
    more than `LAG_LIMIT_FACTOR * queue_size` starts before its outbox is next empty is closed with
    4000 (LAGGING): it is not keeping up, and a reconnect gives it a fresh start.
    """

    __slots__ = (
        "queue_size", "interval", "lag_limit", "published", "rounds", "dropped", "evicted",
        "_subscribers", "_ids", "_closed", "_next_round", "_timer",
    )

    def __init__(self, queue_size: int, interval: float = 0.0) -> None:
        self.queue_size = queue_size
        self.interval = interval
        self.lag_limit = LAG_LIMIT_FACTOR * queue_size
        self.published = 0  # starts published while anyone was subscribed
        self.rounds = 0  # fan-out rounds that carried starts
        self.dropped = 0  # starts dropped over all subscribers
        self.evicted = 0  # connections closed with LAGGING
        self._subscribers: dict[int, Subscriber] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._next_round = _Round()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> int:
        return len(self._subscribers)

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, peer: Peer, countries: Countries, name: str = "") -> Subscriber:
        """Register a connection; it gets `subscribed` first. After close() it is shut at once with 1001."""
        subscriber = Subscriber(next(self._ids), name, peer, countries, self.queue_size)
        subscriber.start()
        if self._closed:
            subscriber.shut(GOING_AWAY, "server shutting down")
            return subscriber
        self._subscribers[subscriber.id] = subscriber
        log.info("live: %s connected (%d connections)", subscriber, len(self._subscribers))
        return subscriber

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """The connection's reader finished: close it (if not already) and forget it."""
        self._subscribers.pop(subscriber.id, None)
        await subscriber.stop()
        ended = "by the client" if subscriber.close_code == NORMAL_CLOSURE else f"with {subscriber.close_code}"
        log.info(
            "live: %s disconnected (closed %s; %d starts dropped) (%d connections)",
            subscriber, ended, subscriber.dropped, len(self._subscribers),
        )

    def publish(self, events: Sequence[Event]) -> None:
        """Listener for events Cassandra acknowledged: gather their starts for the next round; never waits."""
        if not self._subscribers:
            return
        try:
            self._next_round.add(events)
        except Exception:  # the events are stored: a feed bug must not turn that into a failed POST
            log.exception("live: could not publish %d events", len(events))
            return
        if self.interval <= 0:
            self._fan_out()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._fan_out)

    def _fan_out(self) -> None:
        """One round: every subscriber gets the round's starts of its countries."""
        round_, self._next_round = self._next_round, _Round()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not round_.every.frames:
            return
        self.published += len(round_.every.frames)
        self.rounds += 1
        try:
            for subscriber in list(self._subscribers.values()):  # a copy: eviction removes entries
                selection = round_.select(subscriber.countries)
                if selection.frames:
                    self._deliver(subscriber, selection)
        except Exception:  # runs from a timer: log here, where the round is known
            log.exception("live: fan-out of %d starts failed", len(round_.every.frames))

    def _deliver(self, subscriber: Subscriber, selection: Selection) -> None:
        dropped = subscriber.deliver(selection)
        if dropped:
            self.dropped += dropped
            if subscriber.debt > self.lag_limit:
                self._evict(subscriber)

    def _evict(self, subscriber: Subscriber) -> None:
        del self._subscribers[subscriber.id]
        self.evicted += 1
        reason = f"lagging: dropped more than {self.lag_limit} starts without catching up"
        log.warning("live: %s closed: %s (%d connections)", subscriber, reason, len(self._subscribers))
        subscriber.shut(LAGGING, reason)

    async def close(self) -> None:
        """Send the pending round, refuse new subscribers; flush briefly, then close everyone with 1001."""
        self._fan_out()
        self._closed = True
        subscribers = list(self._subscribers.values())
        self._subscribers.clear()
        if not subscribers:
            return
        for subscriber in subscribers:
            subscriber.shut(GOING_AWAY, "server shutting down", SHUTDOWN_DRAIN_SECONDS)
        await asyncio.gather(*(subscriber.wait_closed() for subscriber in subscribers))
        log.info("live: closed %d connections (going away)", len(subscribers))
