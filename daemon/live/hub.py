"""Live feed: fans stored session starts out to subscribers, one socket write per client per round."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

from daemon.core.events import Event
from daemon.core.metrics import LIVE_DROPPED_STARTS, LIVE_EVICTED
from daemon.live.closecodes import GOING_AWAY, LAGGING, NORMAL_CLOSURE
from daemon.live.frames import text_frame
from daemon.live.messages import start_message
from daemon.live.outbox import Selection
from daemon.live.subscriber import Peer, Subscriber
from daemon.live.subscriptions import Countries

log = logging.getLogger(__name__)

LAG_LIMIT_FACTOR = 10
SHUTDOWN_DRAIN_SECONDS = 2.0  # on shutdown, queued starts get this long to go out before the 1001 close


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
            LIVE_DROPPED_STARTS.inc(dropped)
            if subscriber.debt > self.lag_limit:
                self._evict(subscriber)

    def _evict(self, subscriber: Subscriber) -> None:
        del self._subscribers[subscriber.id]
        self.evicted += 1
        LIVE_EVICTED.inc()
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
