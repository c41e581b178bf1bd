"""Unit tests of admission, the actor inbox and the durability ticket."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from daemon.core.events import Event
from daemon.ingest.admission import Admission, Overloaded
from daemon.ingest.inbox import Inbox, InboxClosed, Parcel, Ticket
from daemon.ingest.pipeline import partition_of


def events(count: int) -> list[Event]:
    return [Event("start", f"p{i}", uuid.uuid4(), 0, "FI") for i in range(count)]


async def test_admission_is_whole_or_nothing_and_times_out() -> None:
    admission = Admission(capacity=10)
    await admission.acquire(8, timeout=1)
    with pytest.raises(Overloaded):
        await admission.acquire(5, timeout=0.05)
    assert admission.queued == 8  # the refused request took nothing
    waiter = asyncio.create_task(admission.acquire(5, timeout=5))
    await asyncio.sleep(0)
    admission.release(2)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # 4 free: not enough for 5
    admission.release(1)
    await waiter
    assert admission.queued == 10


async def test_admission_is_first_come_first_served() -> None:
    admission = Admission(capacity=10)
    await admission.acquire(10, timeout=1)
    big = asyncio.create_task(admission.acquire(9, timeout=5))
    await asyncio.sleep(0)
    small = asyncio.create_task(admission.acquire(1, timeout=5))
    await asyncio.sleep(0)
    admission.release(2)  # room for the small one, but the big one came first
    await asyncio.sleep(0)
    assert not small.done() and not big.done()
    admission.release(8)
    await asyncio.gather(big, small)
    assert admission.queued == 10


async def test_a_waiter_that_gives_up_lets_the_next_one_in() -> None:
    admission = Admission(capacity=10)
    await admission.acquire(6, timeout=1)
    big = asyncio.create_task(admission.acquire(8, timeout=0.05))
    await asyncio.sleep(0)
    small = asyncio.create_task(admission.acquire(4, timeout=5))
    with pytest.raises(Overloaded):
        await big
    await small
    assert admission.queued == 10


async def test_take_lingers_then_groups_parcels_up_to_the_flush_size() -> None:
    inbox = Inbox()
    for size in (3, 3, 3):
        await inbox.put(Parcel(events(size), Ticket()))
    taken = await inbox.take(max_events=7, linger=0.01)
    assert taken is not None and [len(p.events) for p in taken] == [3, 3]
    assert inbox.size == 3


async def test_close_drains_then_ends_and_refuses_new_parcels() -> None:
    inbox = Inbox()
    await inbox.put(Parcel(events(2), Ticket()))
    await inbox.close()
    with pytest.raises(InboxClosed):
        await inbox.put(Parcel(events(1), Ticket()))
    assert await inbox.take(10, 0) is not None
    assert await inbox.take(10, 0) is None


async def test_ticket_completes_after_every_parcel_and_the_submitters_hold() -> None:
    ticket = Ticket()
    ticket.add_parcel()
    ticket.add_parcel()
    ticket.parcel_done(None)
    ticket.parcel_done(None)  # all parcels done before the submitter let go
    waiter = asyncio.ensure_future(ticket.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    ticket.parcel_done(None)
    assert await waiter is None


async def test_ticket_reports_the_first_failure() -> None:
    ticket = Ticket()
    ticket.add_parcel()
    error = RuntimeError("boom")
    ticket.parcel_done(error)
    ticket.parcel_done(None)
    assert await ticket.wait() is error


def test_partition_is_stable_and_spread() -> None:
    assert partition_of("0a2d12a1a7e145de8bae44c0c6e06629", 8) == partition_of("0a2d12a1a7e145de8bae44c0c6e06629", 8)
    counts = [0] * 4
    for index in range(4000):
        counts[partition_of(uuid.UUID(int=index * 7919).hex, 4)] += 1
    assert min(counts) > 800
