"""Keeps the per-country start rollups current: recounts the periods that stored starts touched."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from cql.rollups import DAY, FINER, HOUR, MINUTE, MONTH, Level, RollupStore
from daemon.clock import Clock
from daemon.config import RollupConfig
from daemon.events import MS_PER_MINUTE, Event, datetime_to_ms
from daemon.timebuckets import HOURS_PER_DAY, MINUTES_PER_HOUR, month_of_day

log = logging.getLogger(__name__)

REST_FACTOR = 3  # the refresher works at most a quarter of the time


class RollupRefresher:
    """Collects the minutes that received starts and, every `interval`, recounts them and their
    hours, days and months. Recounts are absolute, so duplicates and retries never inflate them.

    The dirty set lives in memory: starts acknowledged just before a crash may leave a rollup
    stale until `python -m daemon rollups rebuild` recounts the range.
    """

    def __init__(self, store: RollupStore, config: RollupConfig, clock: Clock, retention_ms: int) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._retention_ms = retention_ms
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def mark(self, events: Sequence[Event]) -> None:
        """Listener for stored events: remember the minutes of their starts."""
        before = len(self._dirty)
        self._dirty.update(event.ts_ms // MS_PER_MINUTE for event in events if event.country is not None)
        if len(self._dirty) != before:
            self._wake.set()

    def mark_range(self, first_minute: int, end_minute: int) -> None:
        """Mark every minute of [first_minute, end_minute) for a recount (a rebuild)."""
        self._dirty.update(range(first_minute, end_minute))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollup-refresher")

    async def _run(self) -> None:
        busy = 0.0
        while True:
            await self._wake.wait()
            # Debounce, and rest three times as long as the last round worked: during a bulk load
            # of shuffled history every minute is dirty again at once, and recounting back to back
            # would take as much of Cassandra as the load itself. Live traffic dirties a few
            # minutes, so its rounds are short and `interval` rules.
            await asyncio.sleep(max(self._config.interval, REST_FACTOR * busy))
            started = time.monotonic()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rollup refresh failed; will retry")
            busy = time.monotonic() - started

    async def refresh(self) -> None:
        """Recount every dirty minute and the hours, days and months above it."""
        async with self._lock:
            self._wake.clear()
            minutes, self._dirty = self._dirty, set()
            if not minutes:
                return
            try:
                await self._recount(minutes)
            except BaseException:
                self._dirty |= minutes  # try again next round; recounting twice is harmless
                self._wake.set()
                raise

    async def _recount(self, minutes: set[int]) -> None:
        write_us = time.time_ns() // 1_000  # later recounts win over earlier ones, in any replica
        now_ms = datetime_to_ms(self._clock.now())
        started = time.monotonic()
        await self._each(minutes, lambda minute: self._recount_minute(minute, write_us, now_ms))
        hours = {minute // MINUTES_PER_HOUR for minute in minutes}
        await self._each(hours, lambda hour: self._recount_from_finer(HOUR, hour, write_us, now_ms))
        days = {hour // HOURS_PER_DAY for hour in hours}
        await self._each(days, lambda day: self._recount_from_finer(DAY, day, write_us, now_ms))
        months = {month_of_day(day) for day in days}
        await self._each(months, lambda month: self._recount_from_finer(MONTH, month, write_us, now_ms))
        log.debug(
            "rollups: recounted %d minutes, %d hours, %d days, %d months in %.2fs",
            len(minutes), len(hours), len(days), len(months), time.monotonic() - started,
        )

    async def _recount_minute(self, minute: int, write_us: int, now_ms: int) -> None:
        ttl = self._ttl(MINUTE, minute, now_ms)
        if ttl > 0:
            await self._store.write(MINUTE, minute, await self._store.count_minute(minute), write_us, ttl)

    async def _recount_from_finer(self, level: Level, period: int, write_us: int, now_ms: int) -> None:
        ttl = self._ttl(level, period, now_ms)
        if ttl > 0:
            counts = await self._store.sum_partition(FINER[level.name], period)
            await self._store.write(level, period, counts, write_us, ttl)

    def _ttl(self, level: Level, period: int, now_ms: int) -> int:
        """Seconds until the period ends plus retention, by the service clock; <= 0 means expired."""
        return (level.end_ms_of(period) + self._retention_ms - now_ms) // 1000

    async def _each(self, periods: Iterable[int], recount: Callable[[int], Awaitable[None]]) -> None:
        """Run recounts with at most `concurrency` in flight."""
        limit = asyncio.Semaphore(self._config.concurrency)

        async def bounded(period: int) -> None:
            async with limit:
                await recount(period)

        ordered = sorted(periods)
        for offset in range(0, len(ordered), 1_000):  # bounded task count for huge rebuilds
            await asyncio.gather(*(bounded(period) for period in ordered[offset : offset + 1_000]))

    async def close(self, timeout: float) -> None:
        """Stop the loop, then recount what is still dirty (bounded by `timeout`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.refresh(), timeout)
        except (TimeoutError, Exception) as exc:
            log.warning("rollups: final refresh incomplete (%s); %d minutes left dirty", exc, self.pending)
