"""Keeps the per-country start rollups current: recounts the periods that stored starts touched."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import aiojobs

from cql.rollups import RollupStore
from daemon.core.clock import Clock
from daemon.core.config import RollupConfig
from daemon.core.events import Event
from daemon.core.instants import MS_PER_MINUTE
from daemon.core.levels import HOUR, LEVELS, MINUTE, Level, finer

log = logging.getLogger(__name__)

REST_FACTOR = 3  # the refresher works at most a quarter of the time
WRITTEN_CACHE = 20_000  # rows whose last written counts are remembered (to skip unchanged rewrites)
PENDING = 1_000  # recounts queued behind the running ones, so a huge rebuild keeps a bounded task count

Counts = tuple[tuple[str, int], ...]


class RollupRefresher:
    """Collects the minutes that received starts and recounts them and their hours, days and
    months. Recounts are absolute, so duplicates and retries never inflate them.

    A period's row is only read by windows that contain the whole period, and a window ends at
    "now": so a period is recounted once it has ended by the service clock (and again whenever
    later starts land in it), never while it is still open; the partial minute at a window's
    edge is counted from the raw rows. A recount whose result equals what this process last
    wrote is not written again, and does not make its hour, day and month stale.

    The dirty sets live in memory: starts acknowledged just before a crash may leave a rollup
    stale until `python -m daemon rollups rebuild` recounts the range. A clean shutdown recounts
    everything still dirty, ended or not.
    """

    def __init__(self, store: RollupStore, config: RollupConfig, clock: Clock, retention_ms: int) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._retention_ms = retention_ms
        self._dirty: dict[str, set[int]] = {level.name: set() for level in LEVELS}
        self._written: OrderedDict[tuple[str, int], Counts] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def mark(self, events: Sequence[Event]) -> None:
        """Listener for stored events: remember the minutes of their starts."""
        minutes = self._dirty[MINUTE.name]
        before = len(minutes)
        minutes.update(event.ts_ms // MS_PER_MINUTE for event in events if event.country is not None)
        if len(minutes) != before:
            self._wake.set()

    def mark_range(self, first_minute: int, end_minute: int) -> None:
        """Mark every minute of [first_minute, end_minute) for a recount (a rebuild)."""
        self._dirty[MINUTE.name].update(range(first_minute, end_minute))
        self._wake.set()

    @property
    def pending(self) -> int:
        return sum(map(len, self._dirty.values()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollup-refresher")

    async def _run(self) -> None:
        busy = 0.0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._until_next_due())
            except TimeoutError:
                pass  # a dirty period has just ended: time to count it
            # Debounce, and rest three times as long as the last round worked: during a bulk load
            # of shuffled history every minute is dirty again at once, and recounting back to back
            # would take as much of Cassandra as the load itself. Live traffic makes one minute
            # due per minute, so its rounds are short and `interval` rules.
            await asyncio.sleep(max(self._config.interval, REST_FACTOR * busy))
            started = time.monotonic()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rollup refresh failed; will retry")
            busy = time.monotonic() - started

    def _until_next_due(self) -> float | None:
        """Seconds until the earliest dirty period ends (None: nothing waits, or the clock is frozen)."""
        if self._clock.frozen:
            return None
        ends = [level.end_ms_of(min(self._dirty[level.name])) for level in LEVELS if self._dirty[level.name]]
        if not ends:
            return None
        return max(0.0, (min(ends) - self._clock.now_ms()) / 1000)

    async def refresh(self, everything: bool = False) -> None:
        """Recount every dirty period that has ended (or all of them), finest level first."""
        async with self._lock:
            self._wake.clear()
            write_us = time.time_ns() // 1_000  # later recounts win over earlier ones, in any replica
            now_ms = self._clock.now_ms()
            started = time.monotonic()
            done = []
            failed = 0
            for level in LEVELS:
                dirty = self._dirty[level.name]
                # A window [start, now + 1 ms) holds a whole period only once the period has ended.
                due = sorted(p for p in dirty if everything or level.end_ms_of(p) <= now_ms + 1)
                dirty.difference_update(due)
                try:
                    failures = await self._recount_all(level, due, write_us, now_ms)
                except asyncio.CancelledError:
                    dirty.update(due)  # a cancelled round leaves them for the final refresh (recounting is idempotent)
                    raise
                dirty.update(failures)
                failed += len(failures)
                done.append(f"{len(due) - len(failures)} {level.name}s")
            log.debug("rollups: recounted %s in %.2fs", ", ".join(done), time.monotonic() - started)
            if failed:
                self._wake.set()  # try again next round; recounting twice is harmless
                raise RuntimeError(f"{failed} rollup recounts failed; they stay dirty")

    async def _recount_all(self, level: Level, periods: list[int], write_us: int, now_ms: int) -> list[int]:
        """Recount `periods` with at most `concurrency` in flight; return the ones that failed.

        The scheduler starts `concurrency` recounts and holds at most PENDING more, so even a
        year-long rebuild (half a million minutes) keeps a bounded number of tasks.
        """
        failed: list[int] = []

        async def recount(period: int) -> None:
            try:
                await self._recount(level, period, write_us, now_ms)
            except Exception as exc:  # counted and retried next round; never the scheduler's business
                log.warning("rollups: recount of %s %d failed: %r", level.name, period, exc)
                failed.append(period)

        scheduler = aiojobs.Scheduler(limit=self._config.concurrency, pending_limit=PENDING, wait_timeout=None)
        try:
            for period in periods:
                await scheduler.spawn(recount(period))  # waits while PENDING recounts are queued
            await scheduler.wait_and_close()
        finally:
            await scheduler.close()  # cancelled mid-round: stop the recounts still running
        return failed

    async def _recount(self, level: Level, period: int, write_us: int, now_ms: int) -> None:
        ttl = (level.end_ms_of(period) + self._retention_ms - now_ms) // 1000  # by the service clock
        if ttl <= 0:
            return  # expired: no window can hold it
        if level is MINUTE:
            counts = await self._store.count_minute(period)
        else:
            counts = await self._store.sum_partition(finer(level), period)
        key, value = (level.name, period), _frozen(counts)
        previous = self._written.get(key)
        if previous == value:
            return  # unchanged since this process wrote it: nothing above it is stale either
        await self._store.write(level, period, counts, write_us, ttl)
        if level is HOUR:
            # Countries whose count this process has not written yet (every one after a restart),
            # one write at a time: the recounts around this one already keep `concurrency` in flight.
            changed = dict(set(value) - set(previous or ()))
            await self._store.write_hour_starts(period, changed, write_us, ttl, concurrency=1)
        self._written[key] = value
        self._written.move_to_end(key)
        while len(self._written) > WRITTEN_CACHE:
            self._written.popitem(last=False)
        if level.parent is not None:
            self._dirty[level.parent.name].add(level.bucket_of(period))  # the parent period holding this one

    async def close(self, timeout: float) -> None:
        """Stop the loop, then recount what is still dirty, ended or not (bounded by `timeout`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.refresh(everything=True), timeout)
        except (TimeoutError, Exception) as exc:
            log.warning("rollups: final refresh incomplete (%s); %d periods left dirty", exc, self.pending)


def _frozen(counts: Mapping[str, int]) -> Counts:
    return tuple(sorted((country, count) for country, count in counts.items() if count))
