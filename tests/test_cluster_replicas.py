"""Two daemon replicas as real processes on the 3-node cluster, sharing one live feed through a real
redis-server: each one's websocket clients see the starts posted to the other, and SIGKILLing one
leaves the other's clients unaffected."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import LocalCluster, new_player, start, unused_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent


class Replica:
    """One `python -m daemon serve` on the cluster with the live bus, killed hard at the end."""

    def __init__(self, cluster: LocalCluster, bus: str, log: Path) -> None:
        self.port = unused_port()
        cassandra = cluster.config.cassandra
        environ = {
            **os.environ,
            "PSS_SERVER_PORT": str(self.port),
            "PSS_CASSANDRA_CONTACT_POINTS": ",".join(cassandra.contact_points),
            "PSS_CASSANDRA_PORT": str(cassandra.port),
            "PSS_CASSANDRA_KEYSPACE": cassandra.keyspace,
            "PSS_LIVE_BUS": bus,
            "PSS_LIVE_FAN_OUT_INTERVAL": "0",
        }
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "serve"], cwd=ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, f"replica on {self.port} exited with {self.process.returncode}"
            try:
                async with session.get(f"{self.url}/readyz") as answer:
                    body = await answer.json()
                    if answer.status == 200 and body.get("live_bus", {}).get("state") == "up":
                        return dict(body)
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"replica on {self.port} never became ready with its bus up"
            await asyncio.sleep(0.3)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def replicas(cassandra_cluster: LocalCluster, redis_bus: str, tmp_path: Path) -> Iterator[tuple[Replica, ...]]:
    # Both replicas start at once; the cluster fixture has applied the schema at replication factor 3.
    pair = tuple(Replica(cassandra_cluster, redis_bus, tmp_path / f"{name}.log") for name in "ab")
    try:
        yield pair
    finally:
        for replica in pair:
            replica.kill()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def post(session: aiohttp.ClientSession, replica: Replica, events: list[dict[str, Any]]) -> None:
    async with session.post(
        f"{replica.url}/v1/events", data=io.BytesIO(orjson.dumps(events)), headers={"Content-Type": "application/json"}
    ) as answer:
        assert answer.status == 200, await answer.text()


async def starts_received(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[str]:
    """The session ids of the next `count` starts on the socket."""
    received: list[str] = []
    async with asyncio.timeout(30):
        while len(received) < count:
            message = orjson.loads((await ws.receive()).data)
            if message["type"] == "session_start":
                received.append(message["session_id"])
    return received


def batch(count: int, country: str) -> list[dict[str, Any]]:
    return [start(new_player(), str(uuid.uuid4()), "2016-11-30T12:00:00", country) for _ in range(count)]


async def test_each_replica_feeds_the_others_starts_and_survives_its_peer_being_killed(
    replicas: tuple[Replica, ...], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    await a.ready(http)
    await b.ready(http)
    async with http.ws_connect(f"{a.url.replace('http', 'ws')}/v1/live") as on_a, \
            http.ws_connect(f"{b.url.replace('http', 'ws')}/v1/live") as on_b:
        for ws in (on_a, on_b):
            assert orjson.loads((await ws.receive()).data)["type"] == "subscribed"
        to_a, to_b = batch(20, "FI"), batch(20, "SE")
        # Within a request, each actor flushes its own players' events: the feed follows the flushes, so a
        # request's starts are compared as a set, and requests as a sequence.
        await post(http, a, to_a)  # stored through A: B's client must see each of them, once
        assert sorted(await starts_received(on_b, 20)) == sorted(event["session_id"] for event in to_a)
        await post(http, b, to_b)
        on_a_saw = await starts_received(on_a, 40)  # its own replica's 20 first (through the stream too), then B's
        assert sorted(on_a_saw[:20]) == sorted(event["session_id"] for event in to_a)
        assert sorted(on_a_saw[20:]) == sorted(event["session_id"] for event in to_b)
        a.kill()  # SIGKILL, as a crash
        after = batch(10, "NO")
        await post(http, b, after)  # B and its clients go on as if nothing happened
        seen = await starts_received(on_b, 30)  # B's own 20 starts, then the 10 posted after A died
        assert sorted(seen[:20]) == sorted(event["session_id"] for event in to_b)
        assert sorted(seen[20:]) == sorted(event["session_id"] for event in after)
    ready = await b.ready(http)
    assert ready["live_bus"]["state"] == "up"
