"""CSV answers for analysts (`Accept: text/csv`): a header row, ISO timestamps, long listings streamed page by page."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from aiohttp import web

from cql.reads import CompleteSession, StartPosition
from daemon.core.instants import format_ms
from web.keys import READS

CONTENT_TYPE = "text/csv"
LISTING_PAGE = 5000  # starts read from Cassandra per page of a streamed listing

Row = Sequence[Any]


def wants_csv(request: web.Request) -> bool:
    """Whether the Accept header names text/csv with a non-zero quality (JSON stays the default)."""
    for media_range in request.headers.get("Accept", "").split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() == CONTENT_TYPE and quality > 0:
            return True
    return False


def encode_rows(rows: Iterable[Row]) -> str:
    """Rows as CSV text (quoted where a value needs it: a player id may hold a comma)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def csv_response(header: Row, rows: Iterable[Row]) -> web.Response:
    return web.Response(text=encode_rows([header, *rows]), content_type=CONTENT_TYPE, charset="utf-8")


async def stream_csv(request: web.Request, header: Row, pages: AsyncIterator[list[Row]]) -> web.StreamResponse:
    """Stream `pages` after the header. The first page is read before the status is sent, so a
    failure there is still a JSON error; a failure later can only cut the body short."""
    first = await anext(pages, [])
    response = web.StreamResponse(headers={"Content-Type": f"{CONTENT_TYPE}; charset=utf-8"})
    await response.prepare(request)
    await response.write(encode_rows([header, *first]).encode())
    async for page in pages:
        await response.write(encode_rows(page).encode())
    await response.write_eof()
    return response


async def listing_pages(
    request: web.Request, country: str, start_ms: int, end_ms: int, after: StartPosition | None
) -> AsyncIterator[list[Row]]:
    """Every start of `country` in [start_ms, end_ms) (after `after`), newest first, one Cassandra page at a time."""
    while True:
        starts, after = await request.app[READS].country_starts(country, start_ms, end_ms, LISTING_PAGE, after)
        yield [(format_ms(start.ts_ms), start.player_id, start.session_id) for start in starts]
        if after is None:
            return


async def country_starts_csv(
    request: web.Request, country: str, start_ms: int, end_ms: int, after: StartPosition | None
) -> web.StreamResponse:
    pages = listing_pages(request, country, start_ms, end_ms, after)
    return await stream_csv(request, ("ts", "player_id", "session_id"), pages)


def sessions_csv(sessions: Iterable[CompleteSession]) -> web.Response:
    header = ("session_id", "country", "start", "end", "duration_seconds")
    rows = (
        (s.session_id, s.country, format_ms(s.start_ms), format_ms(s.end_ms), (s.end_ms - s.start_ms) // 1000)
        for s in sessions
    )
    return csv_response(header, rows)
