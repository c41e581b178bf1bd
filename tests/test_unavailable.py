"""Cassandra stops answering mid-test: ingest answers 503 with Retry-After, then recovers by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, post_until_stored, session_pair, start
from relay import Relay

from daemon.core.config import load_config
from daemon.tools.node.manager import node_status
from web.app import create_app

pytestmark = pytest.mark.cassandra


@pytest.fixture
def node_pid() -> int:
    status = node_status(load_config().node)
    if not status.running or status.pid is None:
        pytest.fail("the local node started by `make test` is not running", pytrace=False)
    return status.pid


@pytest.fixture
def paused_node(node_pid: int) -> Iterator[Any]:
    """Freeze the real node (SIGSTOP) on demand; always thawed (SIGCONT) at teardown."""

    class Pauser:
        def pause(self) -> None:
            os.kill(node_pid, signal.SIGSTOP)

        def resume(self) -> None:
            os.kill(node_pid, signal.SIGCONT)

    pauser = Pauser()
    yield pauser
    pauser.resume()


@pytest.fixture
async def fragile_client(shared_keyspace: str, aiohttp_client: AiohttpClient) -> TestClient:
    config = config_for(
        shared_keyspace,
        cassandra={"request_timeout": 1.0},
        ingest={"write_retry_seconds": 1.5},
    )
    return await aiohttp_client(create_app(config))


@pytest.mark.timeout(240)
async def test_503_while_the_node_is_stopped_then_recovery(
    fragile_client: TestClient, paused_node: Any, cassandra_admin: Any, shared_keyspace: str
) -> None:
    player = new_player()
    before = list(session_pair(player, "2016-11-28T10:00:00", "2016-11-28T10:05:00"))
    during = list(session_pair(player, "2016-11-28T11:00:00", "2016-11-28T11:05:00"))
    assert (await post_events(fragile_client, before)).status == 200

    paused_node.pause()
    try:
        response = await post_events(fragile_client, during)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"].startswith("Cassandra did not acknowledge the writes")
        ready = await fragile_client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["reason"].startswith("cassandra unreachable")
        assert (await fragile_client.get("/healthz")).status == 200  # the process itself is fine
    finally:
        paused_node.resume()

    await post_until_stored(fragile_client, during)
    assert (await fragile_client.get("/readyz")).status == 200
    rows = cassandra_admin.execute(
        f"SELECT session_id FROM {shared_keyspace}.sessions_by_player WHERE player_id = %s", (player,)
    )
    assert {str(row.session_id) for row in rows} == {before[0]["session_id"], during[0]["session_id"]}


@pytest.mark.timeout(240)
async def test_no_acknowledged_event_is_lost_across_an_outage(
    fragile_client: TestClient, paused_node: Any, cassandra_admin: Any, shared_keyspace: str
) -> None:
    acknowledged: list[tuple[str, str]] = []
    unavailable = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal unavailable
        while not stop.is_set():
            player = new_player()
            events = list(session_pair(player, "2016-11-27T12:00:00", "2016-11-27T12:30:00"))
            response = await post_events(fragile_client, events)
            if response.status == 200:
                acknowledged.append((player, events[0]["session_id"]))
            else:
                assert response.status == 503
                unavailable += 1

    task = asyncio.create_task(writer())
    await asyncio.sleep(1.0)
    paused_node.pause()
    await asyncio.sleep(3.0)
    paused_node.resume()
    await asyncio.sleep(3.0)
    stop.set()
    await task
    assert len(acknowledged) > 5 and unavailable > 0
    for player, session in acknowledged:
        rows = cassandra_admin.execute(
            f"SELECT session_id, start_ts, end_ts FROM {shared_keyspace}.sessions_by_player WHERE player_id = %s",
            (player,),
        )
        stored = {str(row.session_id): row for row in rows}
        assert session in stored and stored[session].start_ts and stored[session].end_ts


@pytest.mark.timeout(120)
async def test_full_inboxes_answer_503_in_bounded_time(
    shared_keyspace: str, aiohttp_client: AiohttpClient, paused_node: Any
) -> None:
    """While Cassandra hangs the queued events fill the admission; the next request waits `queue_wait`, then 503."""
    config = config_for(
        shared_keyspace,
        ingest={
            "actors": 1, "flush_events": 10, "max_batch_events": 20, "max_queued_events": 20,
            "queue_wait": 0.3, "write_retry_seconds": 3.0,
        },
        cassandra={"request_timeout": 1.0},
    )
    client = await aiohttp_client(create_app(config))
    player = new_player()
    backlog = [start(player, str(uuid.uuid4()), "2016-11-29T10:00:00") for _ in range(20)]
    paused_node.pause()
    try:
        first = asyncio.create_task(post_events(client, backlog))  # admitted whole: 10 in flight, 10 queued
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = await post_events(client, [start(player, str(uuid.uuid4()), "2016-11-29T11:00:00")])
        assert second.status == 503
        assert (await second.json())["error"] == "ingest queues are full; retry shortly"
        assert second.headers["Retry-After"] == "5"
        assert loop.time() - started < 2.0
    finally:
        paused_node.resume()
    assert (await first).status in (200, 503)
    assert (await post_until_stored(client, backlog)) >= 1


@pytest.mark.timeout(120)
async def test_reads_answer_503_while_cassandra_does_not_answer_then_recover(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    """Cassandra frozen behind a relay (the shared node keeps running): every read route says 503 + Retry-After
    with a JSON reason, never a 500, and answers again once Cassandra does."""
    reads = ("/v1/players/{player}/sessions", "/v1/session-starts?hours=1", "/v1/countries/FI/session-starts?hours=1")
    player = new_player()
    async with Relay.to_node() as relay:
        client = await aiohttp_client(create_app(relay.config(shared_keyspace)))
        relay.freeze()
        for path in reads:
            response = await client.get(path.format(player=player))
            assert response.status == 503, path
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"].startswith("Cassandra unavailable (")
        relay.thaw()
        for path in reads:
            await read_until_ok(client, path.format(player=player))
        await client.close()  # before the relay goes: the app's shutdown still talks to Cassandra


async def read_until_ok(client: TestClient, path: str) -> None:
    """The driver reconnects on its own schedule after a freeze; the route must answer 200 once it has."""
    for _ in range(60):
        response = await client.get(path)
        if response.status == 200:
            return
        assert response.status == 503, await response.text()
        await asyncio.sleep(0.5)
    pytest.fail(f"{path} still 503 thirty seconds after Cassandra answered again")
