"""The refresher's recount fan-out, with a fake store: bounded concurrency, failures kept dirty, cancellation."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from daemon.core.clock import Clock
from daemon.core.config import RollupConfig
from daemon.core.instants import MS_PER_DAY, parse_instant
from daemon.rollups.refresher import RollupRefresher

NOW = parse_instant("2016-12-01T00:00:00Z")
NOW_MINUTE = int(NOW.timestamp()) // 60


class SlowStore:
    """Counts one start per minute after a short pause (one read per hour's minutes), failing a read that
    holds a minute in `failing`."""

    def __init__(self, failing: set[int] = frozenset(), pause: float = 0.001) -> None:
        self.failing = failing
        self.pause = pause
        self.running = 0
        self.most_running = 0
        self.counted: list[int] = []
        self.written: list[tuple[str, int]] = []

    async def count_minutes(self, minutes: list[int]) -> dict[int, Counter[str]]:
        assert len({minute // 60 for minute in minutes}) == 1  # one hour's minutes per read
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.pause)
            if self.failing.intersection(minutes):
                raise TimeoutError(f"minutes {minutes[0]}.. timed out")
            self.counted.extend(minutes)
            return {minute: Counter({"FI": 1}) for minute in minutes}
        finally:
            self.running -= 1

    async def write_many(self, level: Any, rows: Mapping[int, Any]) -> None:
        self.written.extend((level.name, period) for period in rows)

    async def sum_partition(self, level: Any, bucket: int) -> Counter[str]:
        return Counter({"FI": 60})

    async def write(self, level: Any, period: int, counts: Mapping[str, int], ttl: int) -> None:
        self.written.append((level.name, period))

    async def write_hour_starts(self, hours: Any, concurrency: int) -> None:
        pass


def refresher(store: SlowStore, concurrency: int) -> RollupRefresher:
    config = RollupConfig(interval=1.0, concurrency=concurrency)
    return RollupRefresher(store, config, Clock(NOW), 365 * MS_PER_DAY)  # type: ignore[arg-type]


async def test_recounts_run_at_most_concurrency_at_a_time_and_each_minute_once() -> None:
    store = SlowStore()
    rollups = refresher(store, concurrency=3)
    rollups.mark_range(NOW_MINUTE - 61_000, NOW_MINUTE)  # more hours than the pending queue holds
    await rollups.refresh(everything=True)
    assert store.most_running == 3
    assert sorted(store.counted) == list(range(NOW_MINUTE - 61_000, NOW_MINUTE))
    assert ("minute", NOW_MINUTE - 1) in store.written
    assert rollups.pending == 0
    assert ("hour", (NOW_MINUTE - 1) // 60) in store.written  # the levels above were recounted too


async def test_failed_recounts_stay_dirty_for_the_next_round() -> None:
    failing = {NOW_MINUTE - 7, NOW_MINUTE - 127}  # in two of the three hours
    store = SlowStore(failing=failing)
    rollups = refresher(store, concurrency=2)
    rollups.mark_range(NOW_MINUTE - 180, NOW_MINUTE)
    with pytest.raises(RuntimeError, match="120 rollup recounts failed"):
        await rollups.refresh(everything=True)
    assert sorted(store.counted) == list(range(NOW_MINUTE - 120, NOW_MINUTE - 60))
    store.failing = set()
    await rollups.refresh(everything=True)
    assert sorted(set(store.counted)) == list(range(NOW_MINUTE - 180, NOW_MINUTE))
    assert rollups.pending == 0


async def test_cancelling_a_round_stops_its_recounts() -> None:
    store = SlowStore(pause=0.05)
    rollups = refresher(store, concurrency=4)
    rollups.mark_range(NOW_MINUTE - 1_000 * 60, NOW_MINUTE)
    round_ = asyncio.create_task(rollups.refresh(everything=True))
    await asyncio.sleep(0.12)
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_
    await asyncio.sleep(0.1)
    assert store.running == 0  # nothing left running behind the cancelled round
    assert len(store.counted) < 1_000 * 60
    assert rollups.pending >= 1_000 * 60 - len(store.counted)  # what the round did not finish is still dirty
    store.pause = 0.0
    await rollups.refresh(everything=True)  # as the final refresh on shutdown does
    assert set(store.counted) == set(range(NOW_MINUTE - 1_000 * 60, NOW_MINUTE))
