"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Cassandra and schema usable).

With live.bus set, /readyz also reports the bus (`live_bus`); a bus that is down leaves it 200, since ingest works.
"""

from __future__ import annotations

from aiohttp import web

from cql.schema import check_schema
from web.errors import json_response
from web.keys import DATABASE, LIVE_BUS, PIPELINE


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    problem = await check_schema(request.app[DATABASE])
    if problem is not None:
        return json_response({"status": "unavailable", "reason": problem}, status=503)
    pipeline = request.app[PIPELINE]
    body = {"status": "ready", "actors": pipeline.actor_count, "queued_events": pipeline.queued_events()}
    if LIVE_BUS in request.app:
        body["live_bus"] = request.app[LIVE_BUS].health()
    return json_response(body)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
