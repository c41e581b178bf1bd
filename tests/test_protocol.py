"""Protocol bugs found from outside, each pinned by a regression test against the real app and node."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import config_for, new_player, session_pair, start

from daemon.core.config import Config
from web.app import create_app

pytestmark = pytest.mark.cassandra


@pytest.fixture
async def served(app_config: Any) -> AsyncIterator[str]:
    """The app behind aiohttp's production runner, as `serve` runs it: handlers are not cancelled
    when a client hangs up (the test client's server cancels them, hiding what production does)."""
    runner = web.AppRunner(create_app(app_config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_broken_gzip_body_leaves_the_connection_usable(served: str) -> None:
    connector = aiohttp.TCPConnector(limit=1)  # one connection, so the next request must reuse it
    async with aiohttp.ClientSession(connector=connector) as session:
        events = gzip.compress(orjson.dumps([start(new_player(), str(uuid.uuid4()), "2016-11-30T10:00:00")]))
        broken = events[:10] + b"\xff" * 5_000  # a gzip header, then no valid deflate stream
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with session.post(f"{served}/v1/events", data=io.BytesIO(broken), headers=headers) as answer:
            assert answer.status == 400
            assert "cannot be decoded as gzip" in (await answer.json())["error"]
        for _ in range(2):
            async with session.post(f"{served}/v1/events", data=io.BytesIO(events), headers=headers) as answer:
                assert answer.status == 200  # the same client's next requests work


async def test_an_unsupported_content_encoding_is_a_json_415_naming_the_supported_ones(served: str) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Content-Type": "application/json", "Content-Encoding": "compress"}
        async with session.post(f"{served}/v1/events", data=io.BytesIO(b"\x1f\x9d\x90"), headers=headers) as answer:
            assert answer.status == 415
            assert answer.content_type == "application/json"
            error = (await answer.json())["error"]
        assert "'compress'" in error
        assert all(coding in error for coding in ("identity", "gzip", "deflate", "br", "zstd"))
        async with session.get(f"{served}/healthz") as answer:
            assert answer.status == 200


@pytest.mark.parametrize("coding", ["br", "zstd", "deflate"])
async def test_brotli_zstd_and_deflate_bodies_are_decoded(client: TestClient, coding: str) -> None:
    import zlib

    import brotli
    from backports import zstd

    player = new_player()
    body = orjson.dumps(list(session_pair(player, "2016-11-30T10:00:00", "2016-11-30T10:05:00")))
    encoded = {"br": brotli.compress, "zstd": zstd.compress, "deflate": zlib.compress}[coding](body)
    answer = await client.post(
        "/v1/events", data=io.BytesIO(encoded), headers={"Content-Type": "application/json", "Content-Encoding": coding}
    )
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["accepted"] == 2


async def test_a_non_object_element_is_rejected_alone_and_the_rest_stored(client: TestClient) -> None:
    player = new_player()
    first, second = session_pair(player, "2016-11-30T10:00:00", "2016-11-30T10:05:00")
    answer = await client.post(
        "/v1/events", data=io.BytesIO(orjson.dumps([first, "not an event", second, 7])),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 400
    body = await answer.json()
    assert body["accepted"] == 2 and body["received"] == 4
    assert [rejection["index"] for rejection in body["rejected"]] == [1, 3]
    sessions = await (await client.get(f"/v1/players/{player}/sessions")).json()
    assert len(sessions["sessions"]) == 1  # both halves stored


async def test_malformed_json_as_a_whole_is_still_a_whole_body_400(client: TestClient) -> None:
    answer = await client.post("/v1/events", data=io.BytesIO(b"[{"), headers={"Content-Type": "application/json"})
    assert answer.status == 400
    assert "not valid JSON" in (await answer.json())["error"]


async def test_a_client_leaving_mid_body_is_one_quiet_line(served: str, caplog: Any) -> None:
    host, port = served.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n[{\"event\": \"start\""
            )
            await writer.drain()
            writer.close()  # gone before the body is complete
            await writer.wait_closed()
        for _ in range(100):  # until the server has noticed all three
            if sum("left before its body" in record.getMessage() for record in caplog.records) >= 3:
                break
            await asyncio.sleep(0.02)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]
    quiet = [record for record in caplog.records if "left before its body" in record.getMessage()]
    assert len(quiet) == 3 and all(record.exc_info is None for record in quiet)


# --- slow and hostile clients ---------------------------------------------------------------


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[tuple[str, int]]:
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield "127.0.0.1", runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def trickle(host: str, port: int, stop: asyncio.Event) -> bytes:
    """A client sending its body one byte every 0.1 s; what the server answered before it hung up."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    try:
        while not stop.is_set() and not reader.at_eof():
            writer.write(b" ")
            await writer.drain()
            try:
                # read(n), not read(): a cancelled read() would drop what it had gathered.
                first = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            return first + await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()
    return b""


async def test_bodies_trickled_below_the_minimum_rate_are_408_and_others_are_served_meanwhile(
    shared_keyspace: str,
) -> None:
    config = config_for(shared_keyspace, server={"min_body_rate": 1000, "body_grace": 1.0})
    async with serving(config) as (host, port):
        stop = asyncio.Event()
        tricklers = [asyncio.create_task(trickle(host, port, stop)) for _ in range(30)]
        async with aiohttp.ClientSession() as session:
            events = [start(new_player(), str(uuid.uuid4()), "2016-11-30T10:00:00")]
            async with session.post(f"http://{host}:{port}/v1/events", json=events) as answer:
                assert answer.status == 200
        try:
            answers = await asyncio.wait_for(asyncio.gather(*tricklers), 20)
        finally:
            stop.set()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"slower than 1000 bytes/s" in answer


async def test_a_header_over_the_limit_is_a_400_logged_as_one_quiet_line(served: str, caplog: Any) -> None:
    host, port = served.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)  # read to EOF: the server closes the connection
        writer.close()
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:100]
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    quiet = [record for record in caplog.records if "Got more than 8190 bytes" in record.getMessage()]
    assert len(quiet) == 1 and quiet[0].levelno == logging.INFO and quiet[0].exc_info is None
    async with aiohttp.ClientSession() as session, session.get(f"{served}/healthz") as healthy:
        assert healthy.status == 200


async def test_a_websocket_flooding_messages_is_closed_with_policy_violation(shared_keyspace: str) -> None:
    config = config_for(shared_keyspace, live={"message_rate": 2.0, "message_burst": 5})
    async with serving(config) as (host, port), aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://{host}:{port}/v1/live") as ws:
            for _ in range(50):
                await ws.send_str('{"action": "subscribe", "countries": ["FI"]}')
            closing = await asyncio.wait_for(_until_closed(ws), 10)
        assert ws.close_code == 1008, closing
        assert "messages a second" in str(closing.extra)


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    while True:  # receive(), not `async for`: iteration ends before yielding the close frame
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.CLOSE:
            return message
        if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"closed without a close frame: {message}")
