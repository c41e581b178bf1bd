"""Unit tests of the bounded inbox and the durability ticket."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from daemon.actors import partition_of
from daemon.events import Event
from daemon.inbox import Inbox, InboxClosed, InboxFull, Parcel, Ticket


def events(count: int) -> list[Event]:
    return [Event("start", f"p{i}", uuid.uuid4(), 0, "FI") for i in range(count)]


async def test_put_waits_for_room_then_times_out() -> None:
    inbox = Inbox(capacity=10)
    await inbox.put(Parcel(events(8), Ticket()), timeout=1)
    with pytest.raises(InboxFull):
        await inbox.put(Parcel(events(5), Ticket()), timeout=0.05)
    waiter = asyncio.create_task(inbox.put(Parcel(events(5), Ticket()), timeout=5))
    await asyncio.sleep(0)
    taken = await inbox.take(max_events=100, linger=0)
    assert taken is not None and len(taken[0].events) == 8
    await waiter
    assert inbox.size == 5


async def test_take_lingers_then_groups_parcels_up_to_the_flush_size() -> None:
    inbox = Inbox(capacity=100)
    for size in (3, 3, 3):
        await inbox.put(Parcel(events(size), Ticket()), timeout=1)
    taken = await inbox.take(max_events=7, linger=0.01)
    assert taken is not None and [len(p.events) for p in taken] == [3, 3]
    assert inbox.size == 3


async def test_close_drains_then_ends_and_refuses_new_parcels() -> None:
    inbox = Inbox(capacity=100)
    await inbox.put(Parcel(events(2), Ticket()), timeout=1)
    await inbox.close()
    with pytest.raises(InboxClosed):
        await inbox.put(Parcel(events(1), Ticket()), timeout=1)
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
