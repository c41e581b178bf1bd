"""GET /v1/live: a websocket feed of stored session starts; GET /: the live dashboard that uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from daemon.auth.ratelimit import TokenBucket
from daemon.core.events import COUNTRY_CODE, is_country_code
from daemon.live.closecodes import POLICY_VIOLATION
from daemon.live.subscriber import Subscriber
from daemon.live.subscriptions import Countries
from web.keys import CONFIG, LIVE_HUB
from web.params import bad_request
from web.raw_websocket import WebSocketPeer, feed_response

STATIC_DIR = Path(__file__).parent / "static"
MAX_MESSAGE_BYTES = 16 * 1024  # client messages are small; the full country list fits many times


def query_countries(request: web.Request) -> Countries:
    """`?countries=FI,EE` (repeatable); absent means every country."""
    values = request.query.getall("countries", [])
    if not values:
        return None
    codes = [part.strip() for value in values for part in value.split(",")]
    for code in codes:
        if not is_country_code(code):
            raise bad_request(
                f"countries: {code!r} is not a country code; expected {COUNTRY_CODE}, comma separated "
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
        if not isinstance(code, str) or not is_country_code(code):
            raise ValueError(f"countries: {str(code)[:20]!r} is not a country code; expected {COUNTRY_CODE}")
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
    ws = feed_response(request.app[CONFIG].live.heartbeat, MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise bad_request("expected a websocket upgrade (GET with Upgrade: websocket)")
    await ws.prepare(request)
    hub = request.app[LIVE_HUB]
    subscriber = hub.subscribe(WebSocketPeer(ws, request), countries, name=request.remote or "?")
    config = request.app[CONFIG].live
    # Each message costs a parse and maybe a reply; a client flooding them is cut off, not served.
    allowance = TokenBucket(config.message_rate, config.message_burst)
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
            if allowance.take(1):
                subscriber.shut(POLICY_VIOLATION, f"more than {config.message_rate:g} messages a second")
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


async def static_file(request: web.Request) -> web.FileResponse:
    """A file of the dashboard's folder (no subfolders). Not aiohttp's add_static: its 404 is an empty
    octet-stream body, where every error here is JSON."""
    name = request.match_info["filename"]
    path = STATIC_DIR / name
    if name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound(text=f"no static file {name[:100]!r}")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/live", live_feed)
    app.router.add_get("/", dashboard)
    app.router.add_get("/static/{filename}", static_file)
