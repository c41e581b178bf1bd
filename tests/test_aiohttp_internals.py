"""The aiohttp behaviours web/raw_websocket.py relies on; after an upgrade, each test names what changed."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.base_protocol import BaseProtocol
from conftest import AiohttpClient

from daemon.live.frames import text_frame
from web.raw_websocket import WebSocketPeer, feed_response

try:
    from aiohttp.http import WebSocketWriter
except ImportError:  # reported by the tests that need it, with the message below
    WebSocketWriter = None  # type: ignore[assignment,misc]

RECEIVE_TIMEOUT = 2.0
PAYLOAD_SIZES = [5, 125, 126, 200, 65_535, 65_536, 70_000]  # both sides of the 7-, 16- and 64-bit length limits


def changed(what: str, detail: str = "") -> str:
    """The failure message: what aiohttp changed, why it matters here and what to do about it."""
    return (
        f"aiohttp {aiohttp.__version__} changed {what}. web/raw_websocket.py writes the live feed's "
        "ready-made frames straight to the transport and relies on this (its docstring lists every "
        "such behaviour). Re-check it against aiohttp's web_ws.py and _websocket/writer.py and adapt "
        "it, or fall back to sending each message with `await ws.send_str(...)` (correct, but it "
        "costs the fan-out win measured in BENCHMARKS.md, 'Live fan-out')."
        + (f" Details: {detail}" if detail else "")
    )


class FakeTransport(asyncio.Transport):
    """Keeps what aiohttp's websocket writer writes, one entry per write() call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)


def aiohttp_writer(limit: int | None = None) -> tuple[Any, FakeTransport, BaseProtocol]:
    """aiohttp's server-side websocket writer (no mask, no compression) on a fake transport."""
    if WebSocketWriter is None:
        pytest.fail(changed("where WebSocketWriter lives", "`from aiohttp.http import WebSocketWriter` failed"))
    protocol = BaseProtocol(asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.transport = transport
    options: dict[str, Any] = {"use_mask": False, "compress": 0}
    if limit is not None:
        options["limit"] = limit
    try:
        writer = WebSocketWriter(protocol, transport, **options)
    except TypeError as exc:
        pytest.fail(changed("WebSocketWriter's constructor", str(exc)))
    return writer, transport, protocol


# --- our frames are aiohttp's frames --------------------------------------------------------------


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
async def test_text_frame_is_byte_for_byte_what_aiohttp_writes(size: int) -> None:
    payload = b'"' + b"x" * (size - 2) + b'"'
    writer, transport, _ = aiohttp_writer()
    await writer.send_frame(payload, WSMsgType.TEXT)
    assert transport.written == text_frame(payload), changed(
        f"the bytes of an uncompressed server text frame ({size}-byte payload)",
        f"aiohttp wrote header {transport.written[:10].hex()}, daemon/live/frames.py text_frame() "
        f"{text_frame(payload)[:10].hex()}; fix text_frame() to match RFC 6455 and aiohttp",
    )


# --- aiohttp's own frames are whole and written before it ever waits ------------------------------


def first_step(coro: Coroutine[Any, Any, None]) -> bool:
    """Run a coroutine up to its first suspension; True if it finished without suspending."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


CONTROL_FRAMES = [(WSMsgType.PING, b""), (WSMsgType.PING, b"p" * 125), (WSMsgType.PONG, b"q" * 10),
                  (WSMsgType.CLOSE, b"\x0f\xa0lagging")]


@pytest.mark.parametrize(("opcode", "payload"), CONTROL_FRAMES)
async def test_aiohttp_writes_its_control_frames_whole_without_waiting(opcode: WSMsgType, payload: bytes) -> None:
    writer, transport, _ = aiohttp_writer()
    finished = first_step(writer.send_frame(payload, opcode))
    expected = bytes((0x80 | opcode, len(payload))) + payload
    assert transport.written == expected, changed(
        f"how WebSocketWriter.send_frame writes a {opcode.name} frame",
        f"expected {expected[:12].hex()}... written at once, got {transport.written[:12].hex()}...; "
        "if aiohttp now buffers, splits or defers its frames, ours may land inside or before them",
    )
    assert finished, changed(f"WebSocketWriter.send_frame: it now waits while sending a {opcode.name} frame")


async def test_aiohttp_writes_the_whole_frame_before_waiting_for_a_full_socket() -> None:
    writer, transport, protocol = aiohttp_writer(limit=1)  # every frame is over the limit: it drains
    protocol.pause_writing()  # the socket is full
    finished = first_step(writer.send_frame(b"p" * 100, WSMsgType.PING))
    assert not finished, "expected send_frame to wait for the paused protocol after writing"
    assert transport.written == bytes((0x89, 100)) + b"p" * 100, changed(
        "WebSocketWriter.send_frame: it no longer writes the whole frame before waiting for the socket to drain",
        "our frames could now be written between the parts of one of aiohttp's",
    )
    protocol.resume_writing()


# --- what WebSocketPeer touches exists ------------------------------------------------------------


def test_the_signatures_we_call_are_unchanged() -> None:
    response_parameters = inspect.signature(web.WebSocketResponse.__init__).parameters
    for name in ("heartbeat", "max_msg_size", "compress"):
        assert name in response_parameters, changed(f"WebSocketResponse(): it has no `{name}` parameter")
    close_parameters = inspect.signature(web.WebSocketResponse.close).parameters
    for name in ("code", "message", "drain"):
        assert name in close_parameters, changed(
            f"WebSocketResponse.close(): it has no `{name}` parameter",
            "WebSocketPeer.close() sends the close frame with drain=False behind our raw writes",
        )
    assert isinstance(inspect.getattr_static(web.WebSocketResponse, "closed"), property), changed(
        "WebSocketResponse.closed: no longer a property"
    )
    assert isinstance(inspect.getattr_static(web.BaseRequest, "transport"), property), changed(
        "Request.transport: no longer a property"
    )


# --- a real server and client ---------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(aiohttp_client: AiohttpClient, handler: Handler) -> Any:
    app = web.Application()
    app.router.add_get("/raw", handler)
    return await aiohttp_client(app)


async def test_raw_frames_and_aiohttp_frames_arrive_intact_and_in_order(aiohttp_client: AiohttpClient) -> None:
    seen: dict[str, Any] = {}
    handled = asyncio.Event()
    big = b'"' + b"b" * 70_000 + b'"'

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = feed_response(heartbeat=30.0, max_msg_size=1024)
        await ws.prepare(request)
        peer = WebSocketPeer(ws, request)
        seen["compress"] = ws.compress
        seen["writer"] = getattr(ws, "_writer", None)
        seen["transport"] = request.transport
        seen["backlog"] = peer.backlog()
        peer.write(text_frame(b'"one"'))
        await ws.ping(b"ping-1")
        peer.write(text_frame(big) + text_frame(b'"three"'))
        seen["go"] = await ws.receive(timeout=RECEIVE_TIMEOUT)  # answers the client's ping on the way
        peer.write(text_frame(b'"four"'))

        async def close() -> None:
            await peer.close(4000, "bye")
            seen["after_close"] = attempt(peer.write, text_frame(b'"later"'))
            handled.set()

        closing = seen["closing"] = asyncio.create_task(close())
        await asyncio.sleep(0)  # close() has begun: the close frame is out, the handshake is pending
        seen["closed_while_closing"] = ws.closed
        seen["late_write"] = attempt(peer.write, text_frame(b'"late"'))
        await asyncio.shield(closing)  # the test server cancels the handler once the client hangs up
        return ws

    client = await serve(aiohttp_client, handler)
    ws = await client.ws_connect("/raw", autoping=False, compress=15)  # asks for deflate: must be refused
    received = [await ws.receive(timeout=RECEIVE_TIMEOUT) for _ in range(4)]
    await ws.ping(b"client-ping")
    await ws.send_str("go")
    received += [await ws.receive(timeout=RECEIVE_TIMEOUT) for _ in range(3)]
    await asyncio.wait_for(handled.wait(), RECEIVE_TIMEOUT)
    got = [(message.type, message.data if message.type is not WSMsgType.TEXT else message.data[:10])
           for message in received]
    expected = [
        (WSMsgType.TEXT, '"one"'), (WSMsgType.PING, b"ping-1"), (WSMsgType.TEXT, '"bbbbbbbbb'),
        (WSMsgType.TEXT, '"three"'), (WSMsgType.PONG, b"client-ping"), (WSMsgType.TEXT, '"four"'),
        (WSMsgType.CLOSE, 4000),
    ]
    assert got == expected, changed(
        "the order or framing of what a websocket connection sends",
        f"raw frames interleaved with aiohttp's ping/pong/close arrived as {got}, expected {expected}",
    )
    assert received[2].data == big.decode() and received[-1].extra == "bye"
    assert not ws.compress and not seen["compress"], changed(
        "WebSocketResponse(compress=False): permessage-deflate was negotiated anyway",
        "a deflate context would expect to see (and compress) every frame, our raw ones included",
    )
    writer = seen["writer"]
    assert writer is not None and getattr(writer, "transport", None) is seen["transport"], changed(
        "where WebSocketResponse writes its frames",
        "its writer (ws._writer.transport) is no longer request.transport, so aiohttp's frames and "
        "ours no longer share one ordered byte stream",
    )
    assert isinstance(seen["transport"], asyncio.Transport) and isinstance(seen["backlog"], int), changed(
        "Request.transport: not an asyncio.Transport with get_write_buffer_size()"
    )
    assert isinstance(seen["go"], aiohttp.WSMessage) and seen["go"].data == "go"
    assert seen["closed_while_closing"], changed(
        "WebSocketResponse.closed: it is not yet true once close() has sent the close frame",
        "WebSocketPeer.write() checks it so that no data frame follows a close frame",
    )
    assert seen["late_write"] == seen["after_close"] == "ConnectionResetError"


def attempt(write: Callable[[bytes], None], frame: bytes) -> str:
    try:
        write(frame)
    except ConnectionError as exc:
        return type(exc).__name__
    return "written"


async def test_raw_frames_survive_aiohttp_heartbeats(aiohttp_client: AiohttpClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = feed_response(heartbeat=0.2, max_msg_size=1024)  # a ping every 0.2 s, a pong due within 0.1 s
        await ws.prepare(request)
        peer = WebSocketPeer(ws, request)

        async def pump() -> None:
            for number in itertools.count():
                peer.write(text_frame(b"%d" % number))
                await asyncio.sleep(0.002)

        pumping = asyncio.create_task(pump())
        try:
            await ws.receive(timeout=RECEIVE_TIMEOUT)  # "enough"; the client's pongs are taken on the way
        finally:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
        await peer.close(1000, "")
        return ws

    client = await serve(aiohttp_client, handler)
    ws = await client.ws_connect("/raw", autoping=False)
    numbers: list[int] = []
    pings = 0
    while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is not WSMsgType.CLOSE:
        if message.type is WSMsgType.PING:
            await ws.pong(message.data)
            pings += 1
            if pings == 2:
                await ws.send_str("enough")
        else:
            assert message.type is WSMsgType.TEXT, changed(
                "heartbeat pings: a raw frame and a ping corrupted each other", repr(message)
            )
            numbers.append(int(message.data))
    assert pings >= 2 and message.data == 1000, changed("the heartbeat", f"{pings} pings, ending {message}")
    assert numbers == list(range(len(numbers))) and numbers, changed(
        "heartbeat pings: raw frames went missing or out of order around them", f"{numbers[:20]}..."
    )


async def test_close_without_drain_does_not_wait_for_a_full_socket(aiohttp_client: AiohttpClient) -> None:
    outcome: dict[str, Any] = {}
    handled = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = feed_response(heartbeat=30.0, max_msg_size=1024)
        await ws.prepare(request)

        async def close() -> None:
            request.protocol.pause_writing()  # as the transport does when its buffer is over the high-water mark
            try:
                async with asyncio.timeout(1.0):
                    await ws.close(code=4000, message=b"bye", drain=False)
                outcome["closed"] = True
            except TimeoutError:
                outcome["closed"] = False
            finally:
                if request.protocol.writing_paused:
                    request.protocol.resume_writing()
                handled.set()

        closing = outcome["closing"] = asyncio.create_task(close())
        await asyncio.shield(closing)  # the test server cancels the handler once the client hangs up
        return ws

    client = await serve(aiohttp_client, handler)
    ws = await client.ws_connect("/raw", autoclose=False)
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type is WSMsgType.CLOSE and message.data == 4000
    # Answer the close but keep the connection open, so only the answer can end the server's close().
    await ws.send_frame((1000).to_bytes(2, "big"), WSMsgType.CLOSE)
    await asyncio.wait_for(handled.wait(), RECEIVE_TIMEOUT)
    await ws.close()
    assert outcome.get("closed") is True, changed(
        "WebSocketResponse.close(drain=False): it waits for the socket to drain",
        "WebSocketPeer.close() must not wait on aiohttp's drain; a stuck client would hold it to CLOSE_TIMEOUT",
    )
