"""One live feed from any replica: two apps on one keyspace and one Redis stream, real redis-server and Cassandra."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, start, unused_port
from prometheus_client import REGISTRY

from daemon.core.config import BusConfig
from daemon.core.events import Event
from daemon.core.instants import datetime_to_ms, parse_instant
from daemon.live import bus as live_bus
from daemon.live.bus import LiveBus
from daemon.live.busstate import State
from daemon.tools.bus.server import bus_url, start_bus, stop_bus
from web.app import create_app
from web.keys import LIVE_BUS

pytestmark = pytest.mark.cassandra

TIMEOUT = 10.0  # seconds any one expected thing may take (a loaded 2-core machine)
TS = "2016-11-30T23:00:00Z"
TS_MS = datetime_to_ms(parse_instant(TS))


def quiet(line: str) -> None:
    pass


@pytest.fixture
async def stream(redis_bus: str) -> AsyncIterator[str]:
    """A stream of this test's own on the session's redis-server, deleted afterwards."""
    name = f"pss:test:{secrets.token_hex(4)}"
    yield name
    async with aioredis.Redis.from_url(redis_bus) as admin:
        await admin.delete(name)


async def replicas(
    aiohttp_client: AiohttpClient, keyspace: str, url: str, stream: str, count: int = 2, **live: Any
) -> list[TestClient]:
    """`count` daemons on one keyspace and one bus, as behind a load balancer."""
    config = config_for(keyspace, live={"bus": url, "bus_stream": stream, "fan_out_interval": 0.0, **live})
    return [await aiohttp_client(create_app(config)) for _ in range(count)]


@pytest.fixture
async def pair(shared_keyspace: str, redis_bus: str, stream: str, aiohttp_client: AiohttpClient) -> list[TestClient]:
    return await replicas(aiohttp_client, shared_keyspace, redis_bus, stream)


def bus_of(client: TestClient) -> LiveBus:
    assert client.app is not None
    return client.app[LIVE_BUS]


async def reach(client: TestClient, state: State) -> None:
    await asyncio.wait_for(bus_of(client).state.wait_for(state), TIMEOUT)


async def connect(client: TestClient) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/v1/live")
    assert (await receive(ws))["type"] == "subscribed"
    return ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=TIMEOUT)
    assert message.type is WSMsgType.TEXT, message
    decoded: dict[str, Any] = message.json()
    return decoded


async def sessions(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[str]:
    """The session ids of the next `count` messages, which must all be starts."""
    messages = [await receive(ws) for _ in range(count)]
    assert all(message["type"] == "session_start" for message in messages), messages
    return [message["session_id"] for message in messages]


async def sessions_until(ws: aiohttp.ClientWebSocketResponse, last: str) -> list[str]:
    """Session ids up to and including `last`."""
    received: list[str] = []
    while not received or received[-1] != last:
        received += await sessions(ws, 1)
    return received


def flush_of(count: int, country: str = "FI") -> list[dict[str, Any]]:
    """Starts of one player: one actor stores them, in one flush, in this order."""
    player = new_player()
    return [start(player, str(uuid.uuid4()), f"2016-11-30T23:00:{i:02d}Z", country) for i in range(count)]


async def post(client: TestClient, events: list[dict[str, Any]]) -> list[str]:
    response = await post_events(client, events)
    assert response.status == 200, await response.text()
    return [event["session_id"] for event in events]


async def readiness(client: TestClient) -> dict[str, Any]:
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_every_client_of_either_replica_gets_every_start_in_one_order(pair: list[TestClient]) -> None:
    a, b = pair
    ws_a, ws_b = await connect(a), await connect(b)
    posted: dict[str, list[str]] = {"a": [], "b": []}

    async def post_to(client: TestClient, name: str) -> None:
        for _ in range(5):
            posted[name] += await post(client, flush_of(3))

    await asyncio.gather(post_to(a, "a"), post_to(b, "b"))
    got_a, got_b = await sessions(ws_a, 30), await sessions(ws_b, 30)
    assert got_a == got_b  # one order: the stream's
    assert sorted(got_a) == sorted(posted["a"] + posted["b"])  # each start once
    for name in ("a", "b"):  # each replica's starts in that replica's order
        assert [session for session in got_a if session in set(posted[name])] == posted[name]
    assert (await readiness(a))["live_bus"]["state"] == "up"
    await ws_a.close()
    await ws_b.close()


async def test_a_post_retried_on_the_other_replica_is_announced_once(pair: list[TestClient]) -> None:
    a, b = pair
    clients = [await connect(a), await connect(b), await connect(b)]
    events = flush_of(3) + flush_of(2, "SE")
    await post(a, events)  # the client timed out on the 200 (or got a 503 after the write)...
    await post(b, events)  # ...and sent the same events to the other replica: stored twice
    sentinel = await post(b, flush_of(1))
    expected = sorted([event["session_id"] for event in events] + sentinel)
    for ws in clients:
        assert sorted(await sessions_until(ws, sentinel[0])) == expected
    assert bus_of(a).duplicates + bus_of(b).duplicates >= 2 * len(events)  # every subscribed replica skipped them
    for ws in clients:
        await ws.close()


@pytest.fixture
def slow_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers wait 0.5 s before reconnecting: a wide window for appends they have not read. Before the apps start."""
    monkeypatch.setattr(live_bus, "FIRST_RETRY_DELAY", 0.5)


async def test_a_replica_that_lost_redis_for_a_moment_misses_nothing_still_in_the_stream(
    slow_reconnect: None, pair: list[TestClient], redis_bus: str
) -> None:
    a, b = pair
    ws_a, ws_b = await connect(a), await connect(b)
    async with aioredis.Redis.from_url(redis_bus) as admin:
        readers = [client["id"] for client in await admin.client_list() if client["name"] == f"{bus_of(b).name}-read"]
        assert len(readers) == 1
        await admin.client_kill_filter(_id=readers[0])
    await reach(b, "down")
    from_a = await post(a, flush_of(3))
    from_b = await post(b, flush_of(2))  # local fallback now; appended as well, so read back after the reconnect
    assert bus_of(b).state.state == "down", "the reader reconnected before the posts: widen the window"
    assert await sessions(ws_b, 2) == from_b  # at once, from the fallback
    await reach(b, "up")
    sentinel = await post(a, flush_of(1))
    assert await sessions_until(ws_b, sentinel[0]) == from_a + sentinel  # from_b not again
    assert await sessions_until(ws_a, sentinel[0]) == from_a + from_b + sentinel
    assert bus_of(b).duplicates >= 2
    await ws_a.close()
    await ws_b.close()


@pytest.fixture
def own_bus(tmp_path: Path) -> Iterator[BusConfig]:
    """A redis-server of this test's own, to kill and restart."""
    bus = BusConfig(dir=str(tmp_path / "redis"), port=unused_port())
    start_bus(bus, say=quiet)
    yield bus
    stop_bus(bus, say=quiet)


async def test_redis_killed_ingest_goes_on_the_feed_falls_back_and_then_resumes(
    shared_keyspace: str, own_bus: BusConfig, aiohttp_client: AiohttpClient
) -> None:
    a, b = await replicas(aiohttp_client, shared_keyspace, bus_url(own_bus), "pss:starts")
    ws_a, ws_b = await connect(a), await connect(b)
    before = await post(a, flush_of(2))
    assert await sessions(ws_b, 2) == before and await sessions(ws_a, 2) == before

    # The kill as the actors see it: a flush acknowledged at that moment is queued for the stream (the bus is
    # up as far as anyone knows yet), and the stream will never bring it back: A's client gets it directly.
    stop_bus(own_bus, say=quiet, kill=True)  # SIGKILL, blocking: nothing on the loop has noticed yet
    assert bus_of(a).state.up
    held = [Event("start", new_player(), uuid.uuid4(), TS_MS, "FI") for _ in range(2)]
    bus_of(a).publish(held)  # the listener, as an actor calls it
    assert await sessions(ws_a, 2) == [str(event.session_id) for event in held]
    await reach(a, "down")
    await reach(b, "down")
    posted = await post(a, flush_of(2))  # ingest never waits for Redis
    assert await sessions(ws_a, 2) == posted
    during_b = await post(b, flush_of(1))
    assert await sessions(ws_b, 1) == during_b  # its own, directly; A's since the kill never reached B
    bus = (await readiness(a))["live_bus"]
    assert bus["state"] == "down" and bus["error"] and bus["since"].endswith("Z"), bus

    start_bus(own_bus, say=quiet)  # the same port, an empty stream
    await reach(a, "up")
    await reach(b, "up")
    after_a, after_b = await post(a, flush_of(2)), await post(b, flush_of(2))
    for ws in (ws_a, ws_b):
        assert sorted(await sessions(ws, 4)) == sorted(after_a + after_b)
    assert (await readiness(b))["live_bus"]["state"] == "up"
    with contextlib.suppress(asyncio.TimeoutError):  # nothing more: no start twice
        extra = await ws_a.receive(timeout=0.3)
        pytest.fail(f"unexpected message {extra}")
    await ws_a.close()
    await ws_b.close()


async def test_a_replica_stopping_leaves_the_others_clients_alone(pair: list[TestClient]) -> None:
    a, b = pair
    ws_b = await connect(b)
    last_of_a = await post(a, flush_of(2))
    await a.close()  # shutdown: its actors drain, its last starts reach the stream, then it leaves
    assert await sessions(ws_b, 2) == last_of_a
    from_b = await post(b, flush_of(1))
    assert await sessions(ws_b, 1) == from_b
    assert not ws_b.closed
    await ws_b.close()


async def test_with_redis_unreachable_from_the_start_the_daemon_runs_on_its_own(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    down_before = REGISTRY.get_sample_value("pss_live_bus_errors_total", {"kind": "down"}) or 0.0
    (solo,) = await replicas(
        aiohttp_client, shared_keyspace, f"redis://127.0.0.1:{unused_port()}/0", "pss:starts", count=1
    )
    ws = await connect(solo)
    posted = await post(solo, flush_of(2))
    assert await sessions(ws, 2) == posted
    bus = (await readiness(solo))["live_bus"]
    assert bus["state"] == "down" and "Connect" in bus["error"], bus
    assert (REGISTRY.get_sample_value("pss_live_bus_errors_total", {"kind": "down"}) or 0.0) > down_before  # metric
    await ws.close()


async def test_starts_beyond_the_bus_buffer_reach_only_the_local_clients(
    shared_keyspace: str, redis_bus: str, stream: str, aiohttp_client: AiohttpClient
) -> None:
    a, b = await replicas(aiohttp_client, shared_keyspace, redis_bus, stream, bus_buffer=2)
    ws_a, ws_b = await connect(a), await connect(b)
    too_many = await post(a, flush_of(3))  # one flush of 3 never fits a buffer of 2
    assert await sessions(ws_a, 3) == too_many
    fits = await post(a, flush_of(2))
    assert await sessions(ws_a, 2) == fits
    assert await sessions(ws_b, 2) == fits  # the overflow never reached the stream
    health = (await readiness(a))["live_bus"]
    assert health["overflowed"] == 3 and health["local"] == 3 and health["state"] == "up", health
    await ws_a.close()
    await ws_b.close()
