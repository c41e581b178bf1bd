"""The actors behind POST /v1/events: admit a request whole, route its events by player, wait until durable."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from collections.abc import Sequence

from cql.driver import InFlight
from daemon.core.clock import Clock
from daemon.core.config import IngestConfig
from daemon.core.events import Event
from daemon.ingest.actor import Actor, StatementMaker, StoredListener, Writes, settle
from daemon.ingest.admission import Admission
from daemon.ingest.errors import ShuttingDown, StorageUnavailable
from daemon.ingest.inbox import InboxClosed, Parcel, Ticket
from daemon.ingest.priority import ReadPriority

log = logging.getLogger(__name__)


def partition_of(player_id: str, partitions: int) -> int:
    """Stable across processes and restarts (crc32), unlike Python's salted `hash`."""
    return zlib.crc32(player_id.encode()) % partitions


class Pipeline:
    """Routes each request's events to the actor owning their player; `submit` returns once they are durable."""

    def __init__(
        self,
        db: Writes,
        writer: StatementMaker,
        config: IngestConfig,
        clock: Clock,
        listeners: Sequence[StoredListener] = (),
        priority: ReadPriority | None = None,
    ) -> None:
        self.config = config
        count = config.actors or os.cpu_count() or 1
        self._admission = Admission(config.max_queued_events)
        full = max(1, config.max_inflight_writes // count)  # the actors share the in-flight bound
        depth: InFlight = full
        if priority is not None and 0 < config.inflight_writes_while_answering < config.max_inflight_writes:
            depth = priority.depth(full, max(1, config.inflight_writes_while_answering // count))
        self._actors = [
            Actor(index, db, writer, config, clock, self._admission, listeners, depth) for index in range(count)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def actor_count(self) -> int:
        return len(self._actors)

    def queued_events(self) -> int:
        """Events admitted and not yet written (queued or being flushed)."""
        return self._admission.queued

    def start(self) -> None:
        self._tasks = [asyncio.create_task(actor.run(), name=f"actor-{actor.index}") for actor in self._actors]

    async def submit(self, events: Sequence[Event]) -> None:
        """Queue events to their actors and wait until Cassandra acknowledged all of them.

        Raises Overloaded when there is no room within `queue_wait` (nothing was queued then),
        ShuttingDown, or StorageUnavailable when the writes failed past their retries.
        """
        if not events:
            return
        arrived = time.monotonic()
        await self._admission.acquire(len(events), self.config.queue_wait)
        ticket = Ticket()
        step = self.config.flush_events
        parcels = [
            (actor, Parcel(routed[offset : offset + step], ticket, arrived))
            for actor, routed in zip(self._actors, self._route(events), strict=True)
            for offset in range(0, len(routed), step)
        ]
        for queued, (actor, parcel) in enumerate(parcels):
            ticket.add_parcel()
            try:
                await actor.inbox.put(parcel)
            except InboxClosed:
                unqueued = [parcel for _, parcel in parcels[queued:]]
                settle(unqueued, ShuttingDown("the daemon is shutting down"), self._admission)
                break
        ticket.parcel_done(None)  # give back the submitter's hold
        error = await ticket.wait()
        if isinstance(error, ShuttingDown):
            raise error
        if error is not None:
            raise StorageUnavailable(str(error) or type(error).__name__) from error

    def _route(self, events: Sequence[Event]) -> list[list[Event]]:
        """Each actor's share of `events`, a player's events next to each other (in their request order).

        A request bigger than a flush is cut into flushes; kept together, a player's events land in one
        flush and so in one batch of its own, instead of one per flush it appears in (a 100,000-event
        request of ~6,000 players is ~6,000 player batches this way, ~33,000 in arrival order).
        """
        by_actor: list[dict[str, list[Event]]] = [{} for _ in self._actors]
        for event in events:
            players = by_actor[partition_of(event.player_id, len(self._actors))]
            if (player_events := players.get(event.player_id)) is None:
                players[event.player_id] = [event]
            else:
                player_events.append(event)
        return [[event for player_events in players.values() for event in player_events] for players in by_actor]

    async def close(self, timeout: float) -> None:
        """Stop taking events, let queued ones be written within `timeout`, then cancel the rest."""
        for actor in self._actors:
            await actor.inbox.close()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for actor in self._actors:
            actor.abandon("shutdown timeout: events were not written")
        if pending:
            log.warning("shutdown: %d actors did not drain within %.1fs", len(pending), timeout)
