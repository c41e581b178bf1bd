"""The fan-out bench: its byte-counting subscribers, and one small run against a daemon on the real node."""

from __future__ import annotations

import random
import uuid

import orjson
import pytest

from bench.__main__ import build_parser
from bench.common import free_port, lock_path
from bench.fanout import bench
from bench.subscribers import StreamCounter
from daemon.core.events import Event
from daemon.live.frames import text_frame
from daemon.live.messages import start_message, subscribed_message
from daemon.live.outbox import Gap


def feed_stream(starts: int, drops: list[int]) -> bytes:
    """A feed as the daemon sends it: greeting, starts, with a `lagged` notice after every few starts."""
    frames = [text_frame(subscribed_message(None))]
    for index in range(starts):
        event = Event("start", f"player-{index}", uuid.uuid4(), 1_480_000_000_000 + index, "FI")
        frames.append(text_frame(start_message(event)))
        if drops and index % 3 == 2:
            gap = Gap()
            gap.add(["SE"] * drops.pop())
            frames.append(text_frame(gap.message()))
    return b"".join(frames)


def test_counts_survive_every_split_point() -> None:
    stream = feed_stream(starts=6, drops=[7, 12345])
    for split in range(len(stream) + 1):
        counter = StreamCounter()
        counter.feed(stream[:split])
        counter.feed(stream[split:])
        assert (counter.starts, counter.dropped) == (6, 7 + 12345), split


def test_counts_survive_many_small_reads() -> None:
    stream = feed_stream(starts=200, drops=[3] * 30)
    rng = random.Random(7)
    counter = StreamCounter()
    offset = 0
    while offset < len(stream):
        step = rng.randint(1, 90)
        counter.feed(stream[offset : offset + step])
        offset += step
    assert (counter.starts, counter.dropped) == (200, 90)


def test_the_counted_mark_is_how_the_daemon_encodes_a_start() -> None:
    event = Event("start", "p", uuid.uuid4(), 0, "FI")
    assert orjson.loads(start_message(event))["type"] == "session_start"
    assert StreamCounter().feed(text_frame(start_message(event))) == (1, 0)


@pytest.mark.cassandra
@pytest.mark.parametrize("countries", [0, 2])
async def test_small_fanout_run_accounts_for_every_start(isolated_keyspace: str, countries: int) -> None:
    # CPU is read from /proc in clock ticks (10 ms): 60 events (~50 ms a run) sometimes saw no tick
    # land on a process; 600 keep each run a few hundred milliseconds long.
    events = 600
    args = build_parser().parse_args(
        ["fanout", "--keyspace", isolated_keyspace, "--port", str(free_port()), "--subscribers", "4",
         "--sampled", "1", "--events", str(events), "--batch", "100", "--runs", "1", "--concurrency", "2",
         "--countries", str(countries)]
    )
    quiet, busy = await bench(args)  # starts its own daemon on the keyspace
    assert quiet.subscribers == 0 and quiet.runs[0].events == events
    assert busy.subscribers == 4
    received = sum(delivery.received for delivery in busy.deliveries)  # 1 sampling + 3 counting clients
    assert received == busy.expected
    assert busy.expected == 4 * events if countries == 0 else 0 < busy.expected < 4 * events
    assert all(delivery.complete and delivery.dropped == 0 for delivery in busy.deliveries)
    assert len(busy.after_ack_ms) == len(busy.after_send_ms) > 0  # every start the sampled client got
    assert all(send >= ack for send, ack in zip(busy.after_send_ms, busy.after_ack_ms, strict=True))
    assert busy.cpu[0]["daemon"] > 0 and busy.cpu[0]["cassandra"] > 0
    lock_path(isolated_keyspace).unlink(missing_ok=True)  # the keyspace is dropped: no one locks it again
