"""Keeps the per-country start rollups current: recounts the periods that stored starts touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from itertools import groupby

import aiojobs

from cql.pending import PendingMarks
from cql.rollups import HourCounts, RollupStore
from daemon.core.clock import Clock
from daemon.core.config import RollupConfig
from daemon.core.events import Event
from daemon.core.instants import MS_PER_MINUTE
from daemon.core.levels import HOUR, LEVELS, MINUTE, Level, finer
from daemon.rollups.ledger import CLOCK_SKEW_MARGIN_US, US_PER_SECOND, PendingLedger, now_us

log = logging.getLogger(__name__)

REST_FACTOR = 3  # the refresher works at most a quarter of the time
WRITTEN_CACHE = 20_000  # rows whose last written counts are remembered (to skip unchanged rewrites)
PENDING = 1_000  # recounts queued behind the running ones, so a huge rebuild keeps a bounded task count

Counts = tuple[tuple[str, int], ...]


class RecountsFailed(RuntimeError):
    """Some recounts of a round failed (their periods stay dirty); an expected state while Cassandra is down."""


class RollupRefresher:
    """Collects the minutes that received starts and recounts them and their hours, days and
    months. Recounts are absolute, so duplicates and retries never inflate them.

    A period's row is only read by windows that contain the whole period, and a window ends at
    "now": so a period is recounted once it has ended by the service clock (and again whenever
    later starts land in it), never while it is still open; the partial minute at a window's
    edge is counted from the raw rows. A recount whose result equals what this process last
    wrote is not written again, and does not make its hour, day and month stale.

    The dirty sets live in memory and are backed by durable marks (`rollup_marks`, see
    PendingLedger): ingest marks a start's minute before acknowledging it, so the periods a
    replica had not recounted when it crashed are adopted by another (or by itself once
    restarted) after `rollups.adopt_after`. A clean shutdown recounts everything still dirty,
    ended or not.
    """

    def __init__(
        self,
        store: RollupStore,
        config: RollupConfig,
        clock: Clock,
        retention_ms: int,
        marks: PendingMarks | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._retention_ms = retention_ms
        self._dirty: dict[str, set[int]] = {level.name: set() for level in LEVELS}
        self._ledger = PendingLedger(marks, config.adopt_after, config.concurrency)
        self._hour_starts: list[HourCounts] = []  # the round's recounted hours, for the listing's hour index
        self._stale_parents: dict[int, int] = {}  # parents made stale by the level being recounted: {period: ttl}
        self._written: OrderedDict[tuple[str, int], Counts] = OrderedDict()
        self._wake = asyncio.Event()
        self._last_mark = 0.0  # monotonic time of the last stored events, to rest only while a load goes on
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._caught_up = time.monotonic()  # start of the last round that recounted every due period (monotonic)

    def mark(self, events: Sequence[Event]) -> None:
        """Listener for stored events: remember the minutes of their starts."""
        minutes = self._dirty[MINUTE.name]
        before = len(minutes)
        minutes.update(event.ts_ms // MS_PER_MINUTE for event in events if event.country is not None)
        self._last_mark = time.monotonic()
        if len(minutes) != before:
            self._wake.set()

    def mark_range(self, first_minute: int, end_minute: int) -> None:
        """Mark every minute of [first_minute, end_minute) for a recount (a rebuild)."""
        self._dirty[MINUTE.name].update(range(first_minute, end_minute))
        self._wake.set()

    @property
    def pending(self) -> int:
        return sum(map(len, self._dirty.values()))

    @property
    def lag(self) -> float:
        """Seconds since the start of the last round that recounted every due period: starts stored before then
        are in the rollups. An idle refresher still runs a round every `poll` + `interval`, so this stays about
        that small unless recounts fail or take long."""
        return time.monotonic() - self._caught_up

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollup-refresher")

    async def _run(self) -> None:
        busy = 0.0
        while True:
            due = self._until_next_due()
            wait = self._config.poll if due is None else min(due, self._config.poll)
            # A period just ended, or it is time to look for orphaned marks. asyncio.timeout, not
            # wait_for: cancelling this task inside wait_for(event, timeout) left close() waiting
            # for it forever on Python 3.11 (seen in test_shutdown_drains_accepted_events).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            # Debounce, and rest three times as long as the last round worked: during a bulk load
            # of shuffled history every minute is dirty again at once, and recounting back to back
            # would take as much of Cassandra as the load itself. Live traffic makes one minute
            # due per minute, so its rounds are short and `interval` rules.
            await asyncio.sleep(self._config.interval)
            await self._rest_while_loading(REST_FACTOR * busy - self._config.interval)
            started = time.monotonic()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except RecountsFailed as exc:  # Cassandra unavailable: each recount already logged why
                log.warning("rollups: %s; retrying next round", exc)
            except Exception:
                log.exception("rollup refresh failed; will retry")
            busy = time.monotonic() - started

    async def _rest_while_loading(self, seconds: float) -> None:
        """Sleep up to `seconds`, but only while starts keep arriving: the rest is there to leave a
        load in progress most of Cassandra, so once no start was stored for `interval` the backlog is
        recounted at once (totals settle sooner after a backfill)."""
        deadline = time.monotonic() + seconds
        while (now := time.monotonic()) < deadline:
            quiet_at = self._last_mark + self._config.interval
            if quiet_at <= now:
                return
            await asyncio.sleep(min(deadline, quiet_at) - now)  # wakes when the load may have stopped

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
            round_started = time.monotonic()
            round_us = now_us()  # before any read of this round: marks written later survive its clears
            started = time.monotonic()
            await self._ledger.adopt(self._dirty, round_us)
            now_ms = self._clock.now_ms()
            done = [f"marks read ({time.monotonic() - started:.2f}s)"]
            failed = 0
            for level in LEVELS:
                dirty = self._dirty[level.name]
                # A window [start, now + 1 ms) holds a whole period only once the period has ended.
                due = sorted(p for p in dirty if everything or level.end_ms_of(p) <= now_ms + 1)
                dirty.difference_update(due)
                self._stale_parents = {}
                try:
                    failures = await self._recount_all(level, due, now_ms)
                    if level is HOUR:
                        failures += await self._write_hour_starts()
                except asyncio.CancelledError:
                    dirty.update(due)  # a cancelled round leaves them for the final refresh (recounting is idempotent)
                    raise
                dirty.update(failures)
                await self._ledger.settle(level, set(due).difference(failures), self._stale_parents, round_us)
                failed += len(failures)
                done.append(f"{len(due) - len(failures)} {level.name}s ({time.monotonic() - started:.2f}s)")
            took = time.monotonic() - started
            # A long round (a backfill's) is worth a line: how long totals stayed pending, and why.
            log.log(
                logging.INFO if took > 1 else logging.DEBUG, "rollups: recounted %s in %.2fs", ", ".join(done), took
            )
            self._follow_up_margin(round_started)
            if failed:
                self._wake.set()  # try again next round; recounting twice is harmless
                raise RecountsFailed(f"{failed} rollup recounts failed; they stay dirty")
            self._caught_up = round_started

    def _follow_up_margin(self, round_started: float) -> None:
        """Wake the next round as soon as the clock-skew margin of this one has passed, when starts were
        stored within it: their marks survive this round's clears (see ledger.CLOCK_SKEW_MARGIN_US), and
        totals stay pending until a round clears them. Without this, that round waited for `poll`."""
        margin = CLOCK_SKEW_MARGIN_US / US_PER_SECOND
        if round_started - self._last_mark < margin:
            delay = max(0.0, self._last_mark + margin - time.monotonic())
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _recount_all(self, level: Level, periods: list[int], now_ms: int) -> list[int]:
        """Recount `periods` with at most `concurrency` in flight; return the ones that failed.

        The scheduler starts `concurrency` recounts and holds at most PENDING more, so even a
        year-long rebuild (half a million minutes) keeps a bounded number of tasks.
        """
        failed: list[int] = []
        first_error: list[BaseException] = []

        async def recount(group: list[int]) -> None:
            try:
                if level is MINUTE:
                    await self._recount_minutes(group, now_ms)
                else:
                    await self._recount(level, group[0], now_ms)
            except Exception as exc:  # counted and retried next round; never the scheduler's business
                failed.extend(group)
                if not first_error:
                    first_error.append(exc)

        # The minutes of one hour are read in one request and their rollup rows (one partition)
        # written in a batch or a few: a backfill's recounts cost a few requests per hour, not two
        # per minute. Coarser periods are recounted one by one (one partition read each).
        if level is MINUTE:
            groups = [list(group) for _, group in groupby(periods, key=MINUTE.bucket_of)]
        else:
            groups = [[period] for period in periods]
        scheduler = aiojobs.Scheduler(limit=self._config.concurrency, pending_limit=PENDING, wait_timeout=None)
        try:
            for group in groups:
                await scheduler.spawn(recount(group))  # waits while PENDING recounts are queued
            await scheduler.wait_and_close()
        finally:
            await scheduler.close()  # cancelled mid-round: stop the recounts still running
        if failed:  # one line per level and round, not one per period: a down cluster fails them all
            log.warning("rollups: %d %s recounts failed, the first with %r", len(failed), level.name, first_error[0])
        return failed

    def _ttl(self, level: Level, period: int, now_ms: int) -> int:
        """Seconds the period's row must live, by the service clock (<= 0: expired, no window can hold it)."""
        return (level.end_ms_of(period) + self._retention_ms - now_ms) // 1000

    async def _recount_minutes(self, minutes: list[int], now_ms: int) -> None:
        """Recount minutes of one hour from their raw rows; write the changed ones together."""
        ttls = {minute: ttl for minute in minutes if (ttl := self._ttl(MINUTE, minute, now_ms)) > 0}
        if not ttls:
            return
        counted = await self._store.count_minutes(list(ttls))
        changed = {
            minute: (counts, ttls[minute])
            for minute, counts in counted.items()
            if self._written.get((MINUTE.name, minute)) != _frozen(counts)  # unchanged: nothing above is stale
        }
        if changed:
            await self._store.write_many(MINUTE, changed)
        for minute, (counts, _) in changed.items():
            self._remember(MINUTE, minute, _frozen(counts), now_ms)

    async def _recount(self, level: Level, period: int, now_ms: int) -> None:
        ttl = self._ttl(level, period, now_ms)
        if ttl <= 0:
            return  # expired: no window can hold it
        counts = await self._store.sum_partition(finer(level), period)
        key, value = (level.name, period), _frozen(counts)
        previous = self._written.get(key)
        if previous == value:
            return  # unchanged since this process wrote it: nothing above it is stale either
        await self._store.write(level, period, counts, ttl)
        if level is HOUR:
            # Countries whose count this process has not written yet (every one after a restart),
            # written for all the round's hours at once (`_write_hour_starts`).
            self._hour_starts.append((period, dict(set(value) - set(previous or ())), ttl))
        self._remember(level, period, value, now_ms)

    async def _write_hour_starts(self) -> list[int]:
        """Copy the round's changed hour counts into the listing's hour index, grouped by country;
        returns the hours whose copy failed (recounted and copied again next round)."""
        rows, self._hour_starts = self._hour_starts, []
        if not rows:
            return []
        try:
            await self._store.write_hour_starts(rows, self._config.concurrency)
        except BaseException as exc:
            for hour, _, _ in rows:  # forget them as written, or the next recount would skip the copy
                self._written.pop((HOUR.name, hour), None)
            if not isinstance(exc, Exception):
                raise
            log.warning("rollups: hour index counts of %d hours not written (%r); retried next round", len(rows), exc)
            return [hour for hour, _, _ in rows]
        return []

    def _remember(self, level: Level, period: int, value: Counts, now_ms: int) -> None:
        """A recount of `period` was written: skip rewriting the same counts, and make its parent stale."""
        key = (level.name, period)
        self._written[key] = value
        self._written.move_to_end(key)
        while len(self._written) > WRITTEN_CACHE:
            self._written.popitem(last=False)
        if level.parent is not None:
            parent = level.bucket_of(period)  # the parent period holding this one
            self._dirty[level.parent.name].add(parent)
            self._stale_parents[parent] = self._ttl(level.parent, parent, now_ms)

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
