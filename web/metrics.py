"""GET /metrics on a listener of its own (`[metrics]` host and port, loopback by default; port 0 = none)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from daemon.core.metrics import Readings
from web.keys import CONFIG, DATABASE, LIVE_BUS, LIVE_HUB, PIPELINE, REFRESHER
from web.resources import StartupError

log = logging.getLogger(__name__)

METRICS_SITE = web.AppKey("metrics_site", web.TCPSite)  # only while the metrics listener runs
_APP_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def readers(app: web.Application) -> dict[str, Callable[[], float | None]]:
    """How each reading of daemon.core.metrics.READINGS is taken from the running app."""
    pipeline, hub, database, refresher = app[PIPELINE], app[LIVE_HUB], app[DATABASE], app[REFRESHER]
    bus = app.get(LIVE_BUS)
    return {
        "pss_ingest_queued_events": pipeline.queued_events,
        "pss_ingest_queue_capacity_events": lambda: pipeline.config.max_queued_events,
        "pss_cassandra_hosts": lambda: database.hosts()[0],
        "pss_cassandra_hosts_up": lambda: database.hosts()[1],
        "pss_live_clients": lambda: hub.connections,
        "pss_live_bus_up": lambda: None if bus is None else float(bus.state.up),
        "pss_rollup_recount_lag_seconds": lambda: refresher.lag,
        "pss_rollup_pending_periods": lambda: refresher.pending,
    }


def exposition(app: web.Application) -> bytes:
    """The text format: the process-wide metrics (with process, platform and GC), then this app's readings."""
    return generate_latest(REGISTRY) + generate_latest(app[_APP_REGISTRY])


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Last of the cleanup contexts: every resource it reads exists, and it stops first on shutdown.

    Served on the event loop, not in prometheus-client's own thread: the readings touch the app's
    state, which only the loop may read safely. A scrape costs one short pass over the metrics.
    """
    config = app[CONFIG].metrics
    if config.port == 0:
        yield
        return
    registry = CollectorRegistry()
    registry.register(Readings(readers(app)))
    app[_APP_REGISTRY] = registry

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=exposition(app), headers={"Content-Type": CONTENT_TYPE_LATEST})

    server = web.Application()
    server.router.add_get("/metrics", metrics)
    runner = web.AppRunner(server, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"metrics: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    app[METRICS_SITE] = site
    log.info("metrics on %s/metrics", site.name)
    yield
    await runner.cleanup()
