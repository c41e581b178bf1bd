"""Read endpoints: session starts per country (listing and totals) and a player's complete sessions (JSON or CSV)."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from cql.exact import WindowCounts
from cql.player_sessions import CompleteSession
from daemon.core.events import MAX_PLAYER_ID_LENGTH, PLAYER_ID_TOO_LONG
from daemon.core.instants import format_ms
from web.csv import country_starts_csv, sessions_csv, wants_csv
from web.errors import json_response
from web.keys import CLOCK, CONFIG, COUNTS, READS
from web.params import country_param, decode_cursor, encode_cursor, hours_param, hours_to_ms, limit_param
from web.priority import answered_first


def window(request: web.Request, hours: float) -> tuple[int, int]:
    """The window (now - hours, now] as inclusive-exclusive milliseconds [start, end)."""
    return window_at(request.app[CLOCK].now_ms(), hours)


def window_at(now_ms: int, hours: float) -> tuple[int, int]:
    return now_ms - hours_to_ms(hours) + 1, now_ms + 1


async def country_session_starts(request: web.Request) -> web.StreamResponse:
    country = country_param(request.match_info["country"])
    hours = hours_param(request)
    limit = limit_param(request, default=1000, maximum=10_000)
    cursor = request.query.get("cursor")
    if cursor:
        start_ms, end_ms, after = decode_cursor(country, cursor)
    else:
        (start_ms, end_ms), after = window(request, hours), None
    if wants_csv(request):  # the whole window (from the cursor on, if one is given), page by page
        return await country_starts_csv(request, country, start_ms, end_ms, after)
    starts, resume = await request.app[READS].country_starts(country, start_ms, end_ms, limit, after)
    return json_response(
        {
            "country": country,
            "hours": hours,
            "from": format_ms(start_ms - 1),
            "to": format_ms(end_ms - 1),
            "starts": [
                {"ts": start.ts, "player_id": start.player_id, "session_id": start.session_id} for start in starts
            ],
            "next": encode_cursor(country, start_ms, end_ms, resume) if resume else None,
        }
    )


async def session_start_totals(request: web.Request) -> web.Response:
    hours = hours_param(request)
    payload = await request.app[COUNTS].answer(
        ("totals", hours), lambda now_ms: [window_at(now_ms, hours)], partial(totals_payload, hours)
    )
    return json_response(payload)


def totals_payload(hours: float, now_ms: int, answer: WindowCounts) -> dict[str, Any]:
    start_ms, end_ms = window_at(now_ms, hours)
    countries = {country: count for country, count in sorted(answer.counts[0].items()) if count > 0}
    return {
        "hours": hours,
        "from": format_ms(start_ms - 1),
        "to": format_ms(end_ms - 1),
        "total": sum(countries.values()),
        "countries": countries,
        "settled": answer.settled,
        "pending_periods": answer.pending_periods,
    }


async def player_sessions(request: web.Request) -> web.Response:
    player_id = request.match_info["player_id"]
    if len(player_id) > MAX_PLAYER_ID_LENGTH:
        raise web.HTTPBadRequest(text=PLAYER_ID_TOO_LONG)
    limit = limit_param(request, default=20, maximum=100)
    sessions = await complete_sessions(request, player_id, limit)
    if wants_csv(request):
        return sessions_csv(sessions)
    return json_response(
        {
            "player_id": player_id,
            "sessions": [
                {
                    "session_id": str(session.session_id),
                    "country": session.country,
                    "start": format_ms(session.start_ms),
                    "end": format_ms(session.end_ms),
                    "duration_seconds": (session.end_ms - session.start_ms) // 1000,
                }
                for session in sessions
            ],
        }
    )


async def complete_sessions(request: web.Request, player_id: str, limit: int) -> list[CompleteSession]:
    """The player's newest complete sessions whose start is within the retention period."""
    config = request.app[CONFIG].ingest
    since_ms = request.app[CLOCK].now_ms() - config.retention_ms
    return await request.app[READS].complete_sessions(player_id, since_ms, limit)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/countries/{country}/session-starts", answered_first(country_session_starts))
    app.router.add_get("/v1/session-starts", answered_first(session_start_totals))
    app.router.add_get("/v1/players/{player_id}/sessions", answered_first(player_sessions))
