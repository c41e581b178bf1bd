"""GET /v1/live: a websocket feed of stored session starts; GET /: the live dashboard that uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from daemon.live.hub import Countries, Subscriber
from web.keys import CONFIG, LIVE_HUB
from web.params import COUNTRY, bad_request

STATIC_DIR = Path(__file__).parent / "static"
CLOSE_TIMEOUT = 5.0  # seconds for the close handshake before the TCP connection is dropped
MAX_MESSAGE_BYTES = 16 * 1024  # client messages are small; the full country list fits many times
CODE_RULE = "two uppercase letters (ISO 3166-1 alpha-2)"


class WebSocketPeer:
    """Adapts an aiohttp websocket to the hub's `Peer`: ready-made frames out, a bounded close handshake.

    The hub writes frames it built once for all subscribers straight to the connection's transport:
    aiohttp's own writes (pings, pongs, the close frame) are whole frames written synchronously
    too, so the two never interleave inside a frame. The response is created without compression,
    so no deflate context expects to see these frames.
    """

    __slots__ = ("_ws", "_request")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._request = request

    def write(self, frames: bytes) -> None:
        transport = self._request.transport
        if self._ws.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("the websocket is closing")  # no data frame may follow a close frame
        transport.write(frames)

    def backlog(self) -> int:
        transport = self._request.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def close(self, code: int, reason: str) -> None:
        """Send the close frame behind whatever is still buffered; drop the connection if it never gets out."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                # No drain: when shut() interrupted a send blocked on a full socket, aiohttp keeps that
                # cancelled drain waiter until the socket drains, and draining again would re-raise it.
                await self._ws.close(code=code, message=reason.encode(), drain=False)
                await self._flushed()
        except TimeoutError:
            # The peer reads nothing, so it never gets the close frame: don't keep its buffers forever.
            transport = self._request.transport
            if transport is not None:
                transport.abort()

    async def _flushed(self) -> None:
        """Until the transport has sent everything (or is gone); aiohttp has nothing to await for this."""
        while (transport := self._request.transport) is not None and transport.get_write_buffer_size():
            await asyncio.sleep(0.05)  # noqa: ASYNC110 -- no event exists for "the transport flushed"


def query_countries(request: web.Request) -> Countries:
    """`?countries=FI,EE` (repeatable); absent means every country."""
    values = request.query.getall("countries", [])
    if not values:
        return None
    codes = [part.strip() for value in values for part in value.split(",")]
    for code in codes:
        if not COUNTRY.fullmatch(code):
            raise bad_request(
                f"countries: {code!r} is not a country code; expected {CODE_RULE}, comma separated "
                "(omit the parameter for all countries)"
            )
    return frozenset(codes)


def parse_request(text: str) -> tuple[str, Countries]:
    """A client message: `{"action": "subscribe"|"unsubscribe", "countries": [codes] | null}`."""
    try:
        request: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("message: not JSON") from None
    if not isinstance(request, dict):
        raise ValueError("message: must be a JSON object")
    action = request.get("action")
    if action not in ("subscribe", "unsubscribe"):
        raise ValueError('action: must be "subscribe" or "unsubscribe"')
    if "countries" not in request:
        raise ValueError("countries: required; a list of country codes, or null for all")
    return action, _countries(request["countries"])


def _countries(value: Any) -> Countries:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("countries: must be a list of country codes, or null for all")
    for code in value:
        if not isinstance(code, str) or not COUNTRY.fullmatch(code):
            raise ValueError(f"countries: {str(code)[:20]!r} is not a country code; expected {CODE_RULE}")
    return frozenset(value)


async def handle_message(subscriber: Subscriber, message: WSMessage) -> None:
    """Apply one client message; anything malformed gets an `error` message and the connection stays."""
    if message.type is not WSMsgType.TEXT:
        await subscriber.reply_error("message: send JSON text messages")
        return
    try:
        action, countries = parse_request(message.data)
        if action == "subscribe":
            await subscriber.subscribe(countries)
        else:
            await subscriber.unsubscribe(countries)
    except ValueError as exc:  # SubscriptionError included
        await subscriber.reply_error(str(exc))


async def live_feed(request: web.Request) -> web.StreamResponse:
    countries = query_countries(request)  # before the upgrade, so a bad list is a plain 400
    ws = web.WebSocketResponse(
        heartbeat=request.app[CONFIG].live.heartbeat, max_msg_size=MAX_MESSAGE_BYTES, compress=False
    )
    if not ws.can_prepare(request).ok:
        raise bad_request("expected a websocket upgrade (GET with Upgrade: websocket)")
    await ws.prepare(request)
    hub = request.app[LIVE_HUB]
    subscriber = hub.subscribe(WebSocketPeer(ws, request), countries, name=request.remote or "?")
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
            await handle_message(subscriber, message)
    finally:
        await hub.unsubscribe(subscriber)
    return ws


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


# Everything the page loads comes from this server; no inline scripts, no third parties.
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/live", live_feed)
    app.router.add_get("/", dashboard)
    app.router.add_static("/static/", STATIC_DIR)
