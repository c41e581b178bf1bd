"""One actor per partition of players: owns its inbox, its flushes, their retries and the listeners it tells."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from cassandra.query import Statement

from cql.driver import InFlight
from daemon.core.clock import Clock
from daemon.core.config import IngestConfig
from daemon.core.events import Event
from daemon.core.metrics import FLUSH_EVENTS, FLUSH_SECONDS, INGEST_WAIT_SECONDS
from daemon.ingest.admission import Admission
from daemon.ingest.errors import ShuttingDown, StorageUnavailable
from daemon.ingest.inbox import Inbox, Parcel

log = logging.getLogger(__name__)

StoredListener = Callable[[Sequence[Event]], None]
"""Told of every flush Cassandra acknowledged (rollup marks, live publish); must not block."""

FIRST_RETRY_DELAY = 0.05  # seconds; doubles per attempt up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = 1.0


class Writes(Protocol):
    """What an actor needs of storage: `cql.driver.Database.execute_many`."""

    async def execute_many(
        self, statements: Sequence[Statement], concurrency: InFlight
    ) -> list[BaseException | None]: ...


class StatementMaker(Protocol):
    """What an actor needs of the writer: `cql.writes.EventWriter`."""

    def statements_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Statement]: ...

    def pending_marks_for(self, events: Iterable[Event], expiry_ms: int, now_ms: int) -> list[Statement]: ...

    def remember_hours(self, events: Iterable[Event]) -> None: ...


def settle(parcels: Iterable[Parcel], error: BaseException | None, admission: Admission) -> None:
    """Parcels leave the pipeline (written, failed or abandoned): free their room, tell their requests."""
    for parcel in parcels:
        admission.release(len(parcel.events))
        parcel.ticket.parcel_done(error)


class Actor:
    """Takes parcels from its inbox and writes them in flushes of up to `flush_events`.

    A flush is retried with backoff until `write_retry_seconds`; only the statements that failed
    are sent again (every write is an idempotent upsert). Once Cassandra has acknowledged a flush,
    its listeners are told, then its requests: a listener that fails is logged, never turned into
    a failed request, since the events are already stored.
    """

    __slots__ = ("index", "inbox", "_db", "_writer", "_config", "_clock", "_admission", "_listeners", "_concurrency")

    def __init__(
        self,
        index: int,
        db: Writes,
        writer: StatementMaker,
        config: IngestConfig,
        clock: Clock,
        admission: Admission,
        listeners: Sequence[StoredListener],
        concurrency: InFlight,
    ) -> None:
        self.index = index
        self.inbox = Inbox()
        self._db = db
        self._writer = writer
        self._config = config
        self._clock = clock
        self._admission = admission
        self._listeners = tuple(listeners)
        self._concurrency = concurrency  # this actor's share of the in-flight bound (ingest/priority.py)

    async def run(self) -> None:
        """Flush until the inbox is closed and empty."""
        linger = self._config.linger_ms / 1000
        while (parcels := await self.inbox.take(self._config.flush_events, linger)) is not None:
            await self._flush(parcels)

    def abandon(self, reason: str) -> int:
        """Fail whatever is still queued (shutdown ran out of time); returns how many parcels that was."""
        parcels = self.inbox.drain()
        settle(parcels, ShuttingDown(reason), self._admission)
        return len(parcels)

    async def _flush(self, parcels: list[Parcel]) -> None:
        events = [event for parcel in parcels for event in parcel.events]
        started = time.monotonic()
        for parcel in parcels:  # a few per flush (one per request and actor), never one per event
            INGEST_WAIT_SECONDS.observe(started - parcel.arrived)
        FLUSH_EVENTS.observe(len(events))
        try:
            await self._write(events)
        except asyncio.CancelledError:
            settle(parcels, ShuttingDown("shutdown interrupted the write"), self._admission)
            raise
        except Exception as exc:  # reported to the waiting requests, never dropped
            FLUSH_SECONDS.observe(time.monotonic() - started)
            log.warning("actor %d: flush of %d events failed: %s", self.index, len(events), exc)
            settle(parcels, exc, self._admission)
            return
        FLUSH_SECONDS.observe(time.monotonic() - started)
        self._notify(events)  # before the acknowledgement, so what a client was told is stored is also marked
        settle(parcels, None, self._admission)

    async def _write(self, events: Sequence[Event]) -> None:
        """Write one flush, then its durable rollup marks, retrying until `write_retry_seconds`.

        The marks go only after every row is acknowledged, so a recount that sees a mark also sees
        its rows; the request is acknowledged only after both.
        """
        expiry_ms, now_ms = self._config.retention_ms, self._clock.now_ms()
        deadline = asyncio.get_running_loop().time() + self._config.write_retry_seconds
        await self._execute(self._writer.statements_for(events, expiry_ms, now_ms), deadline)
        await self._execute(self._writer.pending_marks_for(events, expiry_ms, now_ms), deadline)
        self._writer.remember_hours(events)

    async def _execute(self, statements: list[Statement], deadline: float) -> None:
        """Run statements, sending the failed ones again with backoff until `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_DELAY
        while statements:
            errors = await self._db.execute_many(statements, self._concurrency)
            failed = [statement for statement, error in zip(statements, errors, strict=True) if error is not None]
            if not failed:
                return
            first = next(error for error in errors if error is not None)
            if loop.time() + delay > deadline:
                raise StorageUnavailable(f"{len(failed)} writes failed: {type(first).__name__}: {first}")
            log.info("actor %d: retrying %d of %d writes in %.2fs: %s", self.index, len(failed), len(statements),
                     delay, first)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)
            statements = failed

    def _notify(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # the events are stored: a listener bug must not turn that into a failure
                log.exception("actor %d: listener %r failed on %d stored events", self.index, listener, len(events))
