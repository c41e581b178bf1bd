"""The application factory: config in, a fully wired aiohttp Application out."""

from __future__ import annotations

from aiohttp import web

from daemon.core.clock import Clock
from daemon.core.config import Config
from daemon.ingest.priority import ReadPriority
from web import compat, contract, health, ingest, live, observe, queries, series
from web.auth import require_keys
from web.errors import json_errors
from web.keys import CLOCK, CONFIG, READ_PRIORITY
from web.metrics import metrics_ctx
from web.protocol_log import quiet_client_errors
from web.resources import (
    access_ctx,
    cassandra_ctx,
    close_live_connections,
    live_bus_ctx,
    live_hub_ctx,
    pipeline_ctx,
    rollups_ctx,
)


def create_app(config: Config, clock: Clock | None = None) -> web.Application:
    """Build the app; resources start in `cleanup_ctx` order when the app starts."""
    quiet_client_errors()
    app = web.Application(
        middlewares=[json_errors, require_keys],
        # The body limit is enforced by the ingest handler after decompression, with a clear 413.
        client_max_size=config.ingest.max_body_bytes,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or Clock.from_setting(config.clock.now)
    app[READ_PRIORITY] = ReadPriority()  # query routes count themselves in, ingest's write depth follows
    app.cleanup_ctx.extend(
        [cassandra_ctx, access_ctx, live_hub_ctx, live_bus_ctx, rollups_ctx, pipeline_ctx, compat.compat_feed_ctx]
    )
    app.cleanup_ctx.append(metrics_ctx)  # last: it reads the others' state, and stops first
    observe.setup(app)  # request ids, log context and request metrics around every handler
    app.on_shutdown.append(close_live_connections)
    health.setup_routes(app)
    ingest.setup_routes(app)
    queries.setup_routes(app)
    series.setup_routes(app)
    compat.setup_routes(app)
    live.setup_routes(app)
    contract.setup_routes(app)
    return app
