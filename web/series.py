"""GET /v1/session-starts/series: starts per period and country over a window, exact as the totals are."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from aiohttp import web

from cql.exact import WindowCounts
from daemon.core.instants import format_ms
from daemon.core.series import STEPS, build_series, period_starts, period_windows, step_problem
from web.csv import csv_response, wants_csv
from web.errors import json_response
from web.keys import COUNTS
from web.params import bad_request, countries_param, hours_param, hours_to_ms, int_param
from web.priority import answered_first

MAX_TOP = 300  # more than there are country codes in use


def step_param(request: web.Request) -> str:
    step = request.query.get("step")
    if step not in STEPS:
        raise bad_request(f"step: required, one of {', '.join(STEPS)}")
    return step


async def session_start_series(request: web.Request) -> web.StreamResponse:
    hours = hours_param(request)
    step = step_param(request)
    countries = countries_param(request)
    top = int_param(request, "top", 1, MAX_TOP)
    if countries is not None and top is not None:
        raise bad_request("countries and top: give one or the other")
    span_ms = hours_to_ms(hours)
    problem = step_problem(step, span_ms)
    if problem is not None:
        raise bad_request(problem)
    key = ("series", hours, step, countries and tuple(countries), top)  # everything the answer depends on
    shape = partial(series_payload, hours, span_ms, step, countries, top)
    payload = await request.app[COUNTS].answer(key, partial(series_windows, span_ms, step), shape)
    if wants_csv(request):
        rows = zip(payload["periods"], *payload["series"].values(), strict=True)
        return csv_response(("period", *payload["series"]), (list(row) for row in rows))
    return json_response(payload)


def series_windows(span_ms: int, step: str, now_ms: int) -> list[tuple[int, int]]:
    return period_windows(period_starts(now_ms, span_ms, step), step, now_ms)


def series_payload(
    hours: float,
    span_ms: int,
    step: str,
    countries: Sequence[str] | None,
    top: int | None,
    now_ms: int,
    answer: WindowCounts,
) -> dict[str, Any]:
    series = build_series(answer.counts, countries, top)
    periods = [format_ms(start) for start in period_starts(now_ms, span_ms, step)]
    return {
        "hours": hours,
        "step": step,
        "from": periods[0],
        "to": format_ms(now_ms),
        "periods": periods,
        "series": series,
        "totals": {key: sum(values) for key, values in series.items()},
        "settled": answer.settled,
        "pending_periods": answer.pending_periods,
    }


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/session-starts/series", answered_first(session_start_series))
