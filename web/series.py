"""GET /v1/session-starts/series: starts per period and country over a window, exact as the totals are."""

from __future__ import annotations

from aiohttp import web

from daemon.core.instants import format_ms
from daemon.core.series import STEPS, add_up, period_starts, period_windows, series_keys, split_counts, step_problem
from web.csv import csv_response, wants_csv
from web.errors import json_response
from web.keys import CLOCK, COUNTS
from web.params import bad_request, countries_param, hours_param, hours_to_ms, int_param

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
    now_ms = request.app[CLOCK].now_ms()
    starts = period_starts(now_ms, span_ms, step)
    answer = await request.app[COUNTS].count(period_windows(starts, step, now_ms))
    keys = series_keys(add_up(answer.counts), countries, top)
    rows = [split_counts(counts, keys) for counts in answer.counts]
    periods = [format_ms(start) for start in starts]
    if wants_csv(request):
        return csv_response(("period", *keys), ([period, *values] for period, values in zip(periods, rows)))
    series = {key: [values[index] for values in rows] for index, key in enumerate(keys)}
    return json_response(
        {
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
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/session-starts/series", session_start_series)
