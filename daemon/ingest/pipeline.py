"""Per-partition actors: route events by a stable player hash, buffer, flush to Cassandra, ack."""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import Callable, Sequence

from cql.driver import Database
from cql.writes import EventWriter
from daemon.core.clock import Clock
from daemon.core.config import IngestConfig
from daemon.core.events import MS_PER_DAY, Event, datetime_to_ms
from daemon.ingest.admission import Admission
from daemon.ingest.inbox import Inbox, InboxClosed, Parcel, Ticket

log = logging.getLogger(__name__)

StoredListener = Callable[[Sequence[Event]], None]


class StorageUnavailable(Exception):
    """Cassandra did not acknowledge the writes within the retry budget; the request gets 503."""


class ShuttingDown(Exception):
    """The pipeline no longer takes events; the request gets 503."""


def partition_of(player_id: str, partitions: int) -> int:
    """Stable across processes and restarts (crc32), unlike Python's salted `hash`."""
    return zlib.crc32(player_id.encode()) % partitions


class Actor:
    """Owns one partition of players: takes parcels from its inbox and writes them in flushes."""

    __slots__ = ("index", "inbox", "_pipeline")

    def __init__(self, index: int, inbox: Inbox, pipeline: Pipeline) -> None:
        self.index = index
        self.inbox = inbox
        self._pipeline = pipeline

    async def run(self) -> None:
        config = self._pipeline.config
        while (parcels := await self.inbox.take(config.flush_events, config.linger_ms / 1000)) is not None:
            await self._flush(parcels)

    async def _flush(self, parcels: list[Parcel]) -> None:
        events = [event for parcel in parcels for event in parcel.events]
        try:
            await self._pipeline.write(events)
        except asyncio.CancelledError:
            self._pipeline.finish(parcels, ShuttingDown("shutdown interrupted the write"))
            raise
        except Exception as exc:  # reported to the waiting requests, never dropped
            log.warning("actor %d: flush of %d events failed: %s", self.index, len(events), exc)
            self._pipeline.finish(parcels, exc)
            return
        self._pipeline.finish(parcels, None)


class Pipeline:
    """The set of actors behind POST /v1/events; `submit` returns once the events are durable."""

    def __init__(
        self,
        db: Database,
        writer: EventWriter,
        config: IngestConfig,
        clock: Clock,
        listeners: Sequence[StoredListener] = (),
    ) -> None:
        self.config = config
        self._db = db
        self._writer = writer
        self._clock = clock
        self._listeners = list(listeners)
        count = config.actors or os.cpu_count() or 1
        self._actors = [Actor(index, Inbox(), self) for index in range(count)]
        self._admission = Admission(config.max_queued_events)
        self._tasks: list[asyncio.Task[None]] = []
        self._write_concurrency = max(1, config.max_inflight_writes // count)

    @property
    def actor_count(self) -> int:
        return len(self._actors)

    def queued_events(self) -> int:
        """Events admitted and not yet written (queued or being flushed)."""
        return self._admission.queued

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(actor.run(), name=f"actor-{actor.index}") for actor in self._actors
        ]

    async def submit(self, events: Sequence[Event]) -> None:
        """Queue events to their actors and wait until Cassandra acknowledged all of them.

        Raises Overloaded when there is no room within `queue_wait` (nothing was queued then),
        ShuttingDown, or StorageUnavailable when the writes failed past their retries.
        """
        if not events:
            return
        await self._admission.acquire(len(events), self.config.queue_wait)
        by_actor: list[list[Event]] = [[] for _ in self._actors]
        for event in events:
            by_actor[partition_of(event.player_id, len(self._actors))].append(event)
        ticket = Ticket()
        step = self.config.flush_events
        parcels = [
            (actor, Parcel(routed[offset : offset + step], ticket))
            for actor, routed in zip(self._actors, by_actor, strict=True)
            for offset in range(0, len(routed), step)
        ]
        for queued, (actor, parcel) in enumerate(parcels):
            ticket.add_parcel()
            try:
                await actor.inbox.put(parcel)
            except InboxClosed:
                self.finish([parcel for _, parcel in parcels[queued:]], ShuttingDown("the daemon is shutting down"))
                break
        ticket.parcel_done(None)  # give back the submitter's hold
        error = await ticket.wait()
        if isinstance(error, ShuttingDown):
            raise error
        if error is not None:
            raise StorageUnavailable(str(error) or type(error).__name__) from error

    def finish(self, parcels: Sequence[Parcel], error: BaseException | None) -> None:
        """Parcels leave the pipeline (written, failed or abandoned): free their room, tell their requests."""
        for parcel in parcels:
            self._admission.release(len(parcel.events))
            parcel.ticket.parcel_done(error)

    async def write(self, events: Sequence[Event]) -> None:
        """Write one flush, retrying failed statements with backoff until `write_retry_seconds`."""
        now_ms = datetime_to_ms(self._clock.now())
        statements = self._writer.statements_for(events, self.config.retention_days * MS_PER_DAY, now_ms)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.write_retry_seconds
        delay = 0.05
        while True:
            errors = await self._db.execute_many(statements, self._write_concurrency)
            failed = [statement for statement, error in zip(statements, errors, strict=True) if error is not None]
            if not failed:
                break
            first = next(error for error in errors if error is not None)
            if loop.time() + delay > deadline:
                raise StorageUnavailable(f"{len(failed)} writes failed: {type(first).__name__}: {first}")
            log.info("retrying %d of %d writes in %.2fs: %s", len(failed), len(statements), delay, first)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            statements = failed
        self._writer.remember_hours(events)
        for listener in self._listeners:
            listener(events)

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
            self.finish(actor.inbox.drain(), ShuttingDown("shutdown timeout: events were not written"))
        if pending:
            log.warning("shutdown: %d actors did not drain within %.1fs", len(pending), timeout)
