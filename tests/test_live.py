"""The live feed: LiveHub fan-out, subscriptions, lag and shutdown over real websockets; one test with Cassandra."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, new_player, post_events, start
from prometheus_client import REGISTRY

from daemon.core.config import Config, LiveConfig
from daemon.core.events import Event
from daemon.core.instants import datetime_to_ms, parse_instant
from daemon.live import subscriber as live_subscriber
from daemon.live.closecodes import GOING_AWAY, LAGGING
from daemon.live.hub import LiveHub
from web import live, raw_websocket
from web.errors import json_errors
from web.keys import CONFIG, LIVE_HUB

QUEUE_SIZE = 2
LAG_LIMIT = 10 * QUEUE_SIZE
TS = "2016-11-30T23:00:00Z"
TS_MS = datetime_to_ms(parse_instant(TS))
RECEIVE_TIMEOUT = 5.0


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = LiveHub(app[CONFIG].live.queue_size, app[CONFIG].live.fan_out_interval)
    app[LIVE_HUB] = hub
    yield
    await hub.close()


async def close_hub(app: web.Application) -> None:
    await app[LIVE_HUB].close()


def live_app(queue_size: int = QUEUE_SIZE, fan_out_interval: float = 0.0) -> web.Application:
    """Only what the live feed needs: config, the hub (created on startup, closed on shutdown), routes.

    By default every publish() is its own round, so a test sees its effects as soon as it returns.
    """
    app = web.Application(middlewares=[json_errors])
    app[CONFIG] = Config(live=LiveConfig(queue_size=queue_size, heartbeat=5.0, fan_out_interval=fan_out_interval))
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(close_hub)
    live.setup_routes(app)
    return app


@pytest.fixture
async def live_client(aiohttp_client: AiohttpClient) -> TestClient:
    return await aiohttp_client(live_app())


def hub_of(client: TestClient) -> LiveHub:
    app = client.app
    assert app is not None
    hub: LiveHub = app[LIVE_HUB]
    return hub


def starts(*countries: str, player: str = "p") -> list[Event]:
    return [Event("start", f"{player}{i}", uuid.uuid4(), TS_MS + i, country) for i, country in enumerate(countries)]


def an_end() -> Event:
    return Event("end", "ender", uuid.uuid4(), TS_MS, None)


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type is WSMsgType.TEXT, message
    decoded: dict[str, Any] = message.json()
    return decoded


async def receive_starts(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    messages = [await receive(ws) for _ in range(count)]
    assert all(message["type"] == "session_start" for message in messages), messages
    return messages


async def connect(client: TestClient, query: str = "") -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(f"/v1/live{query}")
    assert (await receive(ws))["type"] == "subscribed"
    return ws


async def exchange(ws: aiohttp.ClientWebSocketResponse, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json(request)
    return await receive(ws)


async def test_every_country_by_default_and_ends_are_ignored(live_client: TestClient) -> None:
    ws = await live_client.ws_connect("/v1/live")
    assert await receive(ws) == {"type": "subscribed", "countries": None}
    events = starts("FI", "SE")
    hub_of(live_client).publish([events[0], an_end(), events[1]])
    first, second = await receive_starts(ws, 2)
    assert first == {
        "type": "session_start",
        "country": "FI",
        "player_id": "p0",
        "session_id": str(events[0].session_id),
        "ts": TS,
    }
    assert second["country"] == "SE" and second["ts"] == "2016-11-30T23:00:00.001000Z"
    await ws.close()


async def test_query_selects_countries(live_client: TestClient) -> None:
    ws = await live_client.ws_connect("/v1/live?countries=FI,EE")
    assert await receive(ws) == {"type": "subscribed", "countries": ["EE", "FI"]}
    hub_of(live_client).publish(starts("SE", "FI", "US", "EE"))
    assert [message["country"] for message in await receive_starts(ws, 2)] == ["FI", "EE"]
    await ws.close()


BAD_QUERIES = ["?countries=fi", "?countries=", "?countries=FI,,SE", "?countries=FIN", "?countries=F1"]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_bad_country_list_is_400_before_the_upgrade(live_client: TestClient, query: str) -> None:
    response = await live_client.get(f"/v1/live{query}")
    assert response.status == 400
    assert "countries:" in (await response.json())["error"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await live_client.ws_connect(f"/v1/live{query}")
    assert raised.value.status == 400


async def test_plain_get_is_400(live_client: TestClient) -> None:
    response = await live_client.get("/v1/live")
    assert response.status == 400
    assert "websocket" in (await response.json())["error"]


async def test_subscribe_and_unsubscribe_are_confirmed_with_the_full_set(live_client: TestClient) -> None:
    ws = await connect(live_client, "?countries=FI")
    assert await exchange(ws, {"action": "subscribe", "countries": ["SE", "EE"]}) == {
        "type": "subscribed", "countries": ["EE", "FI", "SE"],
    }
    assert (await exchange(ws, {"action": "unsubscribe", "countries": ["FI", "EE", "NO"]}))["countries"] == ["SE"]
    hub_of(live_client).publish(starts("FI", "SE"))
    assert [message["country"] for message in await receive_starts(ws, 1)] == ["SE"]
    # null is "all"; unsubscribing null leaves nothing (an empty list), not "all".
    assert (await exchange(ws, {"action": "unsubscribe", "countries": None}))["countries"] == []
    assert (await exchange(ws, {"action": "subscribe", "countries": None}))["countries"] is None
    assert (await exchange(ws, {"action": "subscribe", "countries": ["FI"]}))["countries"] is None
    refused = await exchange(ws, {"action": "unsubscribe", "countries": ["FI"]})
    assert refused["type"] == "error" and "subscribed to all countries" in refused["error"]
    hub_of(live_client).publish(starts("FI"))
    assert [message["country"] for message in await receive_starts(ws, 1)] == ["FI"]
    await ws.close()


async def test_starts_after_a_confirmation_match_the_new_set(live_client: TestClient) -> None:
    ws = await connect(live_client, "?countries=FI")
    hub = hub_of(live_client)
    await ws.send_json({"action": "unsubscribe", "countries": ["FI"]})
    await ws.send_json({"action": "subscribe", "countries": ["SE"]})
    messages: list[dict[str, Any]] = []
    while len(messages) < 2 or messages[-1].get("countries") != ["SE"]:
        hub.publish(starts("FI", "SE"))
        messages.append(await receive(ws))
    hub.publish(starts("FI", "SE"))
    assert (await receive(ws))["country"] == "SE"
    selected: list[str] | None = ["FI"]
    for message in messages:  # each start is of a country subscribed at that point of the stream
        if message["type"] == "subscribed":
            selected = message["countries"]
        else:
            assert selected is not None and message["country"] in selected
    await ws.close()


@pytest.mark.parametrize(
    ("send", "error"),
    [
        ("not json", "message: not JSON"),
        ("[1, 2]", "message: must be a JSON object"),
        ('{"action": "dance", "countries": null}', "action:"),
        ('{"action": "subscribe"}', "countries: required"),
        ('{"action": "subscribe", "countries": "FI"}', "countries: must be a list"),
        ('{"action": "subscribe", "countries": ["fi"]}', "'fi' is not a country code"),
        ('{"action": "subscribe", "countries": [7]}', "'7' is not a country code"),
        (b"\x00binary", "send JSON text messages"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_connection_stays(
    live_client: TestClient, send: str | bytes, error: str
) -> None:
    ws = await connect(live_client, "?countries=FI")
    await (ws.send_bytes(send) if isinstance(send, bytes) else ws.send_str(send))
    reply = await receive(ws)
    assert reply["type"] == "error" and error in reply["error"], reply
    hub_of(live_client).publish(starts("FI"))
    assert (await receive_starts(ws, 1))[0]["country"] == "FI"
    assert (await exchange(ws, {"action": "subscribe", "countries": ["SE"]}))["countries"] == ["FI", "SE"]
    await ws.close()


@pytest.mark.parametrize("player_length", [1, 200, 70_000])  # 7-bit, 16-bit and 64-bit frame lengths
async def test_frames_of_every_length_class_arrive_intact(live_client: TestClient, player_length: int) -> None:
    ws = await connect(live_client)
    event = Event("start", "p" * player_length, uuid.uuid4(), TS_MS, "FI")
    hub_of(live_client).publish([event])
    assert (await receive_starts(ws, 1))[0]["player_id"] == event.player_id
    await ws.close()


async def test_starts_within_the_interval_go_out_as_one_round_in_order(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(live_app(fan_out_interval=0.2))
    everyone, finns = await connect(client), await connect(client, "?countries=FI")
    hub = hub_of(client)
    published = [starts("FI", "SE", player="a"), starts("SE", "FI", player="b"), starts("FI", player="c")]
    for events in published:
        hub.publish(events)
    assert hub.rounds == 0  # gathered, not yet sent
    received = await receive_starts(everyone, 5)
    assert [message["player_id"] for message in received] == ["a0", "a1", "b0", "b1", "c0"]
    assert [message["player_id"] for message in await receive_starts(finns, 3)] == ["a0", "b1", "c0"]
    assert hub.rounds == 1 and hub.published == 5
    await everyone.close()
    await finns.close()


async def test_shutdown_sends_the_gathered_round_before_going_away(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(live_app(fan_out_interval=60.0))
    ws = await connect(client)
    hub = hub_of(client)
    hub.publish(starts("FI", "SE"))
    await hub.close()
    messages, ending = await drain(ws)
    assert [message["country"] for message in messages] == ["FI", "SE"]
    assert ending.type is WSMsgType.CLOSE and ending.data == GOING_AWAY


async def test_a_start_the_feed_cannot_encode_never_fails_the_ingest(
    live_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await connect(live_client)
    hub = hub_of(live_client)
    unencodable = Event("start", "\ud800", uuid.uuid4(), TS_MS, "FI")  # intake never lets this through
    hub.publish([unencodable])  # must not raise into the ingest actor that called it
    assert "could not publish" in caplog.text
    hub.publish(starts("SE"))
    assert (await receive_starts(ws, 1))[0]["country"] == "SE"
    await ws.close()


# --- a client that falls behind -----------------------------------------------------------------
# A round is written at once while the client's socket keeps up; only when it is behind do starts
# wait in the bounded outbox. `sockets_behind()` makes every socket count as behind, so a burst
# larger than the queue overflows it deterministically; leaving it lets the writers send again.


@contextlib.contextmanager
def sockets_behind() -> Iterator[None]:
    saved = live_subscriber.HIGH_WATER_BYTES
    live_subscriber.HIGH_WATER_BYTES = -1
    try:
        yield
    finally:
        live_subscriber.HIGH_WATER_BYTES = saved


class RecordingPeer:
    """A connection whose socket always keeps up: records what the hub writes to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, frames: bytes) -> None:
        self.written.append(frames)

    def backlog(self) -> int:
        return 0

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_publish_never_waits_a_keeping_up_client_has_the_starts_when_it_returns() -> None:
    hub = LiveHub(queue_size=10, interval=0.0)
    peer = RecordingPeer()
    hub.subscribe(peer, None, name="recorder")
    greeting = len(peer.written)  # the `subscribed` message
    returned = hub.publish(starts("FI", "SE"))  # called from the actors' flush, which must not block on clients
    assert returned is None
    frames = b"".join(peer.written[greeting:])
    assert frames.count(b'"type":"session_start"') == 2  # written before publish returned: no task switch
    await hub.close()


async def test_a_burst_beyond_the_queue_is_reported_as_lagged(live_client: TestClient) -> None:
    ws = await connect(live_client)
    hub = hub_of(live_client)
    burst = starts("FI", "SE", "FI", "SE", "FI", "EE")
    dropped_before = counted("pss_live_dropped_starts_total")
    with sockets_behind():
        hub.publish(burst)
    kept = await receive_starts(ws, QUEUE_SIZE)
    assert [message["session_id"] for message in kept] == [str(event.session_id) for event in burst[:QUEUE_SIZE]]
    assert await receive(ws) == {"type": "lagged", "dropped": 4, "countries": {"EE": 1, "FI": 2, "SE": 1}}
    assert hub.dropped == 4
    assert counted("pss_live_dropped_starts_total") - dropped_before == 4  # the metric (process-wide)
    after = starts("NO")
    hub.publish(after)
    assert (await receive_starts(ws, 1))[0]["session_id"] == str(after[0].session_id)
    await ws.close()


async def test_dropping_up_to_the_limit_keeps_the_connection(live_client: TestClient) -> None:
    ws = await connect(live_client)
    hub = hub_of(live_client)
    with sockets_behind():
        hub.publish(starts(*["FI"] * (QUEUE_SIZE + LAG_LIMIT)))
    await receive_starts(ws, QUEUE_SIZE)
    assert await receive(ws) == {"type": "lagged", "dropped": LAG_LIMIT, "countries": {"FI": LAG_LIMIT}}
    hub.publish(starts("SE"))
    assert (await receive_starts(ws, 1))[0]["country"] == "SE"
    assert hub.evicted == 0 and hub.connections == 1
    await ws.close()


async def test_dropping_beyond_the_limit_closes_with_4000(live_client: TestClient) -> None:
    ws = await connect(live_client)
    other = await connect(live_client, "?countries=SE")
    hub = hub_of(live_client)
    evicted_before = counted("pss_live_evicted_clients_total")
    with sockets_behind():
        hub.publish(starts(*["FI"] * (QUEUE_SIZE + LAG_LIMIT + 1)))
    assert hub.evicted == 1 and hub.connections == 1
    assert counted("pss_live_evicted_clients_total") - evicted_before == 1
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type is WSMsgType.CLOSE and message.data == LAGGING
    assert message.extra and "lagging" in message.extra
    assert ws.close_code == LAGGING
    hub.publish(starts("SE"))
    assert (await receive_starts(other, 1))[0]["country"] == "SE"
    await other.close()


# A really stuck client: tiny socket buffers on both ends so its writer blocks on the transport.


def tiny_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the TCP window
    sock.setblocking(False)
    return sock


async def tiny_send_buffer(request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(response, web.WebSocketResponse) and request.transport is not None:
        request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        request.transport.set_write_buffer_limits(high=4096)


@pytest.fixture
async def stuck_setup(aiohttp_client: AiohttpClient) -> AsyncIterator[tuple[TestClient, Callable[[], Any]]]:
    app = live_app()
    app.on_response_prepare.append(tiny_send_buffer)
    client = await aiohttp_client(app)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)) as session:
        yield client, lambda: session.ws_connect(client.make_url("/v1/live"), max_msg_size=0)


async def publish_until(
    hub: LiveHub, fast: aiohttp.ClientWebSocketResponse, done: Callable[[], bool], limit: int = 50_000
) -> tuple[int, float]:
    """Publish starts two at a time (the queue size) while `fast` reads each; returns count and slowest publish."""
    published, slowest = 0, 0.0
    filler = "x" * 100  # bigger messages fill the stuck client's buffers sooner
    while not done():
        assert published < limit, "the stuck client never fell behind"
        batch = starts("FI", "SE", player=f"{filler}-{published}-")
        began = time.perf_counter()
        hub.publish(batch)
        slowest = max(slowest, time.perf_counter() - began)
        received = await receive_starts(fast, len(batch))
        assert [message["session_id"] for message in received] == [str(event.session_id) for event in batch]
        published += len(batch)
    return published, slowest


async def drain(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], aiohttp.WSMessage]:
    """Everything until the connection ends, and the message that ended it."""
    messages: list[dict[str, Any]] = []
    while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
        messages.append(message.json())
    return messages, message


async def test_a_stuck_client_never_slows_publish_or_others_and_learns_what_it_missed(
    stuck_setup: tuple[TestClient, Callable[[], Any]],
) -> None:
    client, connect_stuck = stuck_setup
    hub = hub_of(client)
    stuck = await connect_stuck()  # never reads until the end
    fast = await connect(client)
    published, slowest = await publish_until(hub, fast, lambda: hub.dropped >= LAG_LIMIT // 2)
    assert slowest < 0.05, f"publish took {slowest:.3f}s"
    assert hub.evicted == 0
    messages = await read_until_accounted(stuck, published)
    lagged = [message for message in messages if message["type"] == "lagged"]
    assert lagged, "a gap must be reported"
    assert sum(message["dropped"] for message in lagged) == hub.dropped  # all the stuck one's
    await fast.close()
    await stuck.close()


async def read_until_accounted(ws: aiohttp.ClientWebSocketResponse, published: int) -> list[dict[str, Any]]:
    """Read until every published start arrived or was reported missing by a `lagged` message."""
    messages: list[dict[str, Any]] = []
    accounted = 0
    while accounted < published:
        messages.append(message := await receive(ws))
        accounted += {"session_start": 1, "lagged": message.get("dropped", 0)}.get(message["type"], 0)
    assert accounted == published
    return messages


async def test_a_stuck_client_is_closed_with_4000_and_others_get_everything(
    stuck_setup: tuple[TestClient, Callable[[], Any]],
) -> None:
    client, connect_stuck = stuck_setup
    hub = hub_of(client)
    stuck = await connect_stuck()
    fast = await connect(client)
    await publish_until(hub, fast, lambda: hub.evicted == 1)
    assert hub.connections == 1
    messages, ending = await drain(stuck)
    assert ending.type is WSMsgType.CLOSE and ending.data == LAGGING, ending
    assert messages[0]["type"] == "subscribed"
    hub.publish(starts("FI"))
    await receive_starts(fast, 1)
    await fast.close()


async def test_a_stuck_client_that_never_takes_the_close_frame_is_dropped(
    stuck_setup: tuple[TestClient, Callable[[], Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw_websocket, "CLOSE_TIMEOUT", 0.2)
    client, connect_stuck = stuck_setup
    hub = hub_of(client)
    stuck = await connect_stuck()
    fast = await connect(client)
    await publish_until(hub, fast, lambda: hub.evicted == 1)
    await asyncio.sleep(1.0)  # well past the close timeout, without reading
    messages, ending = await drain(stuck)
    assert ending.type in (WSMsgType.CLOSED, WSMsgType.ERROR), ending  # dropped, no close frame
    assert messages[0]["type"] == "subscribed"
    await fast.close()


async def test_shutdown_closes_every_connection_with_1001(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(live_app())
    first = await connect(client)
    second = await connect(client, "?countries=FI")
    hub = hub_of(client)
    hub.publish(starts("FI"))
    await hub.close()
    for ws in (first, second):
        messages, ending = await drain(ws)
        assert [message["type"] for message in messages] == ["session_start"]  # flushed before closing
        assert ending.type is WSMsgType.CLOSE and ending.data == GOING_AWAY
    assert hub.connections == 0
    late = await client.ws_connect("/v1/live")
    _, ending = await drain(late)
    assert ending.type is WSMsgType.CLOSE and ending.data == GOING_AWAY


@pytest.mark.cassandra
async def test_a_stored_start_reaches_the_subscribers_of_its_country(client: TestClient) -> None:
    ws = await connect(client, "?countries=FI")
    player = new_player()
    finnish = start(player, str(uuid.uuid4()), "2016-11-30T23:00:00", "FI")
    swedish = start(player, str(uuid.uuid4()), "2016-11-30T23:00:01", "SE")
    response = await post_events(client, [finnish, swedish])
    assert response.status == 200, await response.text()
    assert await receive(ws) == {
        "type": "session_start",
        "country": "FI",
        "player_id": player,
        "session_id": finnish["session_id"],
        "ts": "2016-11-30T23:00:00Z",
    }
    with pytest.raises(asyncio.TimeoutError):  # published before the 200: nothing else is coming
        await ws.receive(timeout=0.3)
    await ws.close()


def counted(name: str) -> float:
    """A process-wide counter's value now (pss_live_* in daemon/core/metrics.py)."""
    return REGISTRY.get_sample_value(name) or 0.0
