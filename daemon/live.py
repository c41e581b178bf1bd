"""Live feed: fans stored session starts out to subscribers through bounded per-connection outboxes."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson

from daemon.clock import format_instant
from daemon.events import Event, ms_to_datetime

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

Countries = frozenset[str] | None
"""A subscription: a set of ISO 3166-1 alpha-2 codes, or None for every country."""


class Peer(Protocol):
    """The sending side of one client connection (web/live.py adapts an aiohttp websocket)."""

    async def send(self, payload: bytes) -> None: ...

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


class _Reply:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Outbox:
    """One connection's outgoing messages in order.

    Session starts are bounded by `capacity`: what does not fit is dropped and counted in a `Gap`
    placed where the starts are missing. Replies and gap notices are never dropped; replies are
    bounded by their sender waiting for room, gaps by the starts between them.
    """

    __slots__ = ("capacity", "debt", "_items", "_starts", "_replies", "_gap", "_ready", "_reply_room", "_closed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.debt = 0  # starts dropped since the outbox was last empty
        self._items: collections.deque[bytes | Gap | _Reply] = collections.deque()
        self._starts = 0
        self._replies = 0
        self._gap: Gap | None = None  # open while no start was accepted after it
        self._ready = asyncio.Event()
        self._reply_room = asyncio.Event()
        self._reply_room.set()
        self._closed = False

    def offer(self, countries: Sequence[str], payloads: Sequence[bytes]) -> int:
        """Queue the starts that fit, drop the rest; returns how many were dropped. Never waits."""
        if self._closed:
            return 0
        room = self.capacity - self._starts
        if room > 0:
            accepted = payloads if room >= len(payloads) else payloads[:room]
            self._items.extend(accepted)
            self._starts += len(accepted)
            self._gap = None
        if room >= len(payloads):
            self._ready.set()
            return 0
        dropped = countries[room:]
        if self._gap is None:
            self._gap = Gap()
            self._items.append(self._gap)
        self._gap.add(dropped)
        self.debt += len(dropped)
        self._ready.set()
        return len(dropped)

    def push_reply(self, payload: bytes) -> None:
        """Queue a reply; callers wait for `reply_room` first, except for the one greeting."""
        if self._closed:
            return
        self._items.append(_Reply(payload))
        self._replies += 1
        if self._replies >= MAX_PENDING_REPLIES:
            self._reply_room.clear()
        self._ready.set()

    async def reply_room(self) -> None:
        await self._reply_room.wait()

    async def get(self) -> bytes | Gap | None:
        """The next item to send; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if not self._items:
            self.debt = 0  # caught up
        if type(item) is bytes:
            self._starts -= 1
            return item
        if isinstance(item, _Reply):
            self._replies -= 1
            self._reply_room.set()
            return item.payload
        if item is self._gap:
            self._gap = None  # later drops start a new gap behind whatever is queued then
        return item

    def close(self, flush: bool) -> None:
        """Take nothing more; with `flush`, queued items are still handed out, else they are discarded."""
        self._closed = True
        if not flush:
            self._items.clear()
            self._starts = self._replies = 0
            self._gap = None
        self._ready.set()
        self._reply_room.set()  # nobody may wait for room that will never come


class Subscriber:
    """One live connection: its countries, its outbox and the writer task that owns its sending side."""

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
        self._outbox.push_reply(subscribed_message(self.countries))
        self._task = asyncio.create_task(self._write(), name=f"live-writer-{self.id}")

    def offer(self, countries: Sequence[str], payloads: Sequence[bytes]) -> int:
        dropped = self._outbox.offer(countries, payloads)
        self.dropped += dropped
        return dropped

    async def subscribe(self, countries: Countries) -> None:
        await self._change(add_countries, countries)

    async def unsubscribe(self, countries: Countries) -> None:
        await self._change(remove_countries, countries)

    async def _change(self, rule: _Rule, countries: Countries) -> None:
        await self._outbox.reply_room()
        # Changing the filter and queuing the confirmation in one step means every start after a
        # `subscribed` message was selected with exactly that set.
        self.countries = rule(self.countries, countries)
        self._outbox.push_reply(subscribed_message(self.countries))

    async def reply_error(self, reason: str) -> None:
        await self._outbox.reply_room()
        self._outbox.push_reply(error_message(reason))

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
        """Send queued messages in order until the outbox is closed and empty, or shut() interrupts."""
        try:
            async with asyncio.timeout(self._deadline) as self._scope:
                while (item := await self._outbox.get()) is not None:
                    await self._peer.send(self._render(item))
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
        return item.message()


class _Rule(Protocol):
    def __call__(self, current: Countries, countries: Countries, /) -> Countries: ...


class _Batch:
    """One publish call's starts, encoded once and selected once per distinct subscription."""

    __slots__ = ("countries", "payloads", "_selections")

    def __init__(self, starts: Iterable[Event]) -> None:
        self.countries: list[str] = []
        self.payloads: list[bytes] = []
        for event in starts:
            assert event.country is not None
            self.countries.append(event.country)
            self.payloads.append(start_message(event))
        self._selections: dict[frozenset[str], tuple[list[str], list[bytes]]] = {}

    def select(self, wanted: Countries) -> tuple[list[str], list[bytes]]:
        if wanted is None:
            return self.countries, self.payloads
        selection = self._selections.get(wanted)
        if selection is None:
            picked = [i for i, country in enumerate(self.countries) if country in wanted]
            selection = [self.countries[i] for i in picked], [self.payloads[i] for i in picked]
            self._selections[wanted] = selection
        return selection


class LiveHub:
    """Hands every stored session start to the subscribers that want its country; never blocks ingest.

    Each subscriber has an outbox of `queue_size` starts. A full outbox drops starts and the client
    later gets `{"type": "lagged", "dropped": n, ...}` where they are missing. A client that drops
    more than `LAG_LIMIT_FACTOR * queue_size` starts before its outbox is next empty is closed with
    4000 (LAGGING): it is not keeping up, and a reconnect gives it a fresh start.
    """

    __slots__ = ("queue_size", "lag_limit", "published", "dropped", "evicted", "_subscribers", "_ids", "_closed")

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.lag_limit = LAG_LIMIT_FACTOR * queue_size
        self.published = 0  # starts published while anyone was subscribed
        self.dropped = 0  # starts dropped over all subscribers
        self.evicted = 0  # connections closed with LAGGING
        self._subscribers: dict[int, Subscriber] = {}
        self._ids = itertools.count(1)
        self._closed = False

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
        """Listener for events Cassandra acknowledged: queue their starts; synchronous, never waits."""
        if not self._subscribers:
            return
        try:
            self._fan_out(events)
        except Exception:  # the events are stored: a feed bug must not turn that into a failed POST
            log.exception("live: could not publish %d events", len(events))

    def _fan_out(self, events: Sequence[Event]) -> None:
        batch = _Batch(event for event in events if event.country is not None)
        if not batch.payloads:
            return
        self.published += len(batch.payloads)
        for subscriber in list(self._subscribers.values()):  # a copy: eviction removes entries
            countries, payloads = batch.select(subscriber.countries)
            if not payloads:
                continue
            dropped = subscriber.offer(countries, payloads)
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
        """Refuse new subscribers; flush briefly, then close every connection with 1001 GOING_AWAY."""
        self._closed = True
        subscribers = list(self._subscribers.values())
        self._subscribers.clear()
        if not subscribers:
            return
        for subscriber in subscribers:
            subscriber.shut(GOING_AWAY, "server shutting down", SHUTDOWN_DRAIN_SECONDS)
        await asyncio.gather(*(subscriber.wait_closed() for subscriber in subscribers))
        log.info("live: closed %d connections (going away)", len(subscribers))
