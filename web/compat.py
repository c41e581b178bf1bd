"""The original service's routes, with its text formats, so existing scripts keep working."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from cql.compat import LineCursor
from cql.reads import StartPosition
from daemon.compat.rawfile import CompatFeed, RawFile
from daemon.core.events import is_country_code
from daemon.core.instants import ms_to_datetime
from daemon.core.intake import NDJSON, Rules, read_body
from web.auth import charge_events
from web.errors import json_response
from web.ingest import store_intake
from web.keys import CLOCK, COMPAT_FEED, CONFIG, DATABASE, READS
from web.params import MAX_HOURS
from web.priority import answered_first
from web.queries import complete_sessions, window

MAX_ADD = 100_000
FETCH_PAGE = 10_000


def _original_stamp(ts: dt.datetime) -> str:
    """A naive UTC instant in the original's format, "2016-11-22 20:40:50".

    `isoformat` rather than `strftime`: a month's /fetch formats tens of thousands of them, and
    it takes ~0.4 µs each against ~1.5 µs.
    """
    return ts.isoformat(" ", "seconds")


def _original_time(ts_ms: int) -> str:
    return _original_stamp(ms_to_datetime(ts_ms).replace(tzinfo=None))


async def add_events(request: web.Request) -> web.Response:
    count = int(request.match_info["n"])
    if not 1 <= count <= MAX_ADD:
        raise web.HTTPNotFound()
    feed = request.app.get(COMPAT_FEED)
    if feed is None:
        raise web.HTTPNotFound(text="compat.raw_file is not configured")
    async with feed.lock:  # one request at a time per process keeps the reader sequential
        while True:
            first = await feed.cursor.position()
            lines = await asyncio.to_thread(feed.raw_file.read, first, count)
            if lines:
                rules = Rules.of(request.app[CONFIG].ingest, request.app[CLOCK].now_ms(), max_events=MAX_ADD)
                intake = await asyncio.to_thread(read_body, b"\n".join(lines), NDJSON, rules)
                stored = charge_events(request, intake.received) or await store_intake(request.app, intake)
                if stored.status in (429, 503):
                    return stored  # the position did not move: the next request serves these lines again
            # Stored first, claimed after: a lost race only means these lines were stored twice.
            if await feed.cursor.advance(first, len(lines)):
                break
    return web.Response(text=f"{len(lines)} events have been added", content_type="text/html")


async def fetch_starts(request: web.Request) -> web.Response:
    hours = int(request.match_info["hours"])
    country = request.match_info["country"]
    if hours > MAX_HOURS:
        raise web.HTTPNotFound()
    if hours == 0 or not is_country_code(country):
        return web.Response(text="", content_type="text/html")
    start_ms, end_ms = window(request, hours)
    reads = request.app[READS]
    stamps: list[str] = []
    after: StartPosition | None = None
    while True:
        starts, after = await reads.country_starts(country, start_ms, end_ms, FETCH_PAGE, after)
        stamps.extend(_original_stamp(start.ts) for start in starts)
        if after is None:
            break
    return web.Response(text=" ; ".join(stamps), content_type="text/html")


async def complete_sessions_original(request: web.Request) -> web.Response:
    player_id = request.match_info["player_id"]
    sessions = await complete_sessions(request, player_id, 20)
    return json_response(
        [
            {
                "player_id": player_id,
                "session_id": str(session.session_id),
                "session_end": _original_time(session.end_ms),
                "session_start": _original_time(session.start_ms),
                "country": session.country,
            }
            for session in sessions
        ]
    )


async def compat_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """Opens the raw file lazily on first use; the claim key is the configured path."""
    setting = app[CONFIG].compat.raw_file
    raw_file = RawFile(Path(setting)) if setting else None
    if raw_file is not None:
        app[COMPAT_FEED] = CompatFeed(raw_file, LineCursor(app[DATABASE], setting))
    yield
    if raw_file is not None:
        raw_file.close()


def setup_routes(app: web.Application) -> None:
    app.router.add_get(r"/add/{n:\d+}", add_events)
    app.router.add_get(r"/fetch/{country}/{hours:\d+}", answered_first(fetch_starts))
    app.router.add_get(r"/complete_sessions/{player_id:[0-9a-fA-F]{32}}", answered_first(complete_sessions_original))
