"""Identical concurrent requests share one computation, and never one that began before they arrived."""

from __future__ import annotations

import asyncio

import pytest

from daemon.core.coalesce import Coalescer


class Store:
    """A value that writes change; a read takes a while, and sees the value as it was when the read began."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self) -> int:
        self.reads += 1
        seen = self.value
        await self.gate.wait()
        await asyncio.sleep(0.01)
        return seen


async def test_callers_arriving_together_share_one_run() -> None:
    store, shared = Store(), Coalescer[str, int]()
    answers = await asyncio.gather(*(shared.run("totals", store.read) for _ in range(8)))
    assert (answers, store.reads) == ([0] * 8, 1)


async def test_a_caller_arriving_during_a_run_gets_a_later_run_that_sees_its_write() -> None:
    store, shared = Store(), Coalescer[str, int]()
    store.gate.clear()
    early = [asyncio.create_task(shared.run("totals", store.read)) for _ in range(3)]
    while store.reads == 0:  # until the first run has begun: it read 0
        await asyncio.sleep(0)
    store.value = 1  # a write acknowledged before the next callers ask
    late = [asyncio.create_task(shared.run("totals", store.read)) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.reads == 1  # the late callers wait for the run in flight to end; they do not join it
    store.gate.set()
    assert await asyncio.gather(*early) == [0, 0, 0]
    assert await asyncio.gather(*late) == [1] * 5
    assert store.reads == 2


async def test_different_keys_never_share() -> None:
    store, shared = Store(), Coalescer[str, int]()
    await asyncio.gather(shared.run("a", store.read), shared.run("b", store.read))
    assert store.reads == 2


async def test_a_failure_reaches_every_caller_and_the_next_run_starts_clean() -> None:
    shared = Coalescer[str, int]()
    runs = 0

    async def failing() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("cassandra unavailable")

    results = await asyncio.gather(*(shared.run("k", failing) for _ in range(4)), return_exceptions=True)
    assert [type(result) for result in results] == [RuntimeError] * 4 and runs == 1
    assert await shared.run("k", Store().read) == 0


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    store, shared = Store(), Coalescer[str, int]()
    store.gate.clear()
    leaving, staying = (asyncio.create_task(shared.run("k", store.read)) for _ in range(2))
    await asyncio.sleep(0)
    leaving.cancel()
    store.gate.set()
    assert await staying == 0
    with pytest.raises(asyncio.CancelledError):
        await leaving
