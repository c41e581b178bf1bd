"""One cleanup context per resource, in dependency order: Cassandra, API keys, live hub, live bus, rollups, actors.

Teardown runs in reverse, so actors drain into Cassandra before rollups take their last count
and before the session closes, and their last starts reach the live bus before it closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from cassandra.cluster import NoHostAvailable

from cql.apikeys import ApiKeyStore
from cql.driver import Database
from cql.exact import ExactCounts
from cql.grouping import Grouping
from cql.layout import LayoutMissing
from cql.pending import PendingMarks
from cql.reads import Reads
from cql.rollups import RollupStore
from cql.schema import check_schema
from cql.writes import EventWriter
from daemon.auth.access import Access
from daemon.auth.keyring import KeyRefresher
from daemon.core.errors import CommandError
from daemon.ingest.pipeline import Pipeline
from daemon.live.bus import LiveBus
from daemon.live.hub import LiveHub
from daemon.rollups.refresher import RollupRefresher
from web.counting import SharedCounts
from web.keys import (
    ACCESS,
    CLOCK,
    CONFIG,
    COUNTS,
    DATABASE,
    LIVE_BUS,
    LIVE_HUB,
    MARKS,
    PIPELINE,
    READ_PRIORITY,
    READS,
    REFRESHER,
    ROLLUPS,
)

log = logging.getLogger(__name__)


class StartupError(CommandError):
    """The daemon cannot start; the CLI prints the message as one line."""


async def cassandra_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].cassandra
    try:
        db = await Database.connect(config)
    except NoHostAvailable as exc:
        hosts = ",".join(config.contact_points)
        raise StartupError(f"cannot reach Cassandra at {hosts}:{config.port}: {exc}") from None
    problem = await check_schema(db)
    if problem is not None:
        await db.close()
        raise StartupError(problem)
    log.info("connected to Cassandra %s, keyspace %s", ",".join(config.contact_points), config.keyspace)
    app[DATABASE] = db
    try:
        app[READS] = await Reads.prepare(db)
    except LayoutMissing as exc:
        await db.close()
        raise StartupError(str(exc)) from None
    app[ROLLUPS] = await RollupStore.prepare(db)
    marks = await PendingMarks.prepare(db)
    app[MARKS] = marks
    counts = ExactCounts(app[ROLLUPS], marks, app[CONFIG].rollups.max_direct_minutes)
    app[COUNTS] = SharedCounts(counts, app[CLOCK])
    yield
    await db.close()


async def access_ctx(app: web.Application) -> AsyncIterator[None]:
    """The API keys, read before the first request and every `auth.refresh` seconds after; with none, anonymous
    access is allowed on a loopback address (or with auth.allow_anonymous), else the daemon does not start."""
    config = app[CONFIG]
    access = Access.of(config.auth)
    refresher = KeyRefresher(ApiKeyStore(app[DATABASE]), access.ring, config.auth.refresh)
    await refresher.load()
    if not access.ring.enforced:
        if not (config.server.is_loopback or config.auth.allow_anonymous):
            raise StartupError(
                f"no API key exists and server.host {config.server.host!r} is not a loopback address: create keys "
                "with `python -m daemon keys create --scope ingest|read`, or set auth.allow_anonymous = true"
            )
        log.warning(
            "no API keys: serving anonymously%s; create keys with `python -m daemon keys create --scope ingest|read`",
            " (auth.allow_anonymous)" if not config.server.is_loopback else f" on loopback {config.server.host} only",
        )
    app[ACCESS] = access
    refresher.start()
    yield
    await refresher.close()


async def live_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = LiveHub(app[CONFIG].live.queue_size, app[CONFIG].live.fan_out_interval)
    app[LIVE_HUB] = hub
    yield
    await hub.close()


async def live_bus_ctx(app: web.Application) -> AsyncIterator[None]:
    """With live.bus set, stored starts go through the Redis stream and the hub is fed from it; Redis may be down."""
    config = app[CONFIG].live
    if not config.bus:
        yield
        return
    bus = LiveBus(app[LIVE_HUB], config)
    await bus.start()
    app[LIVE_BUS] = bus
    yield
    await bus.close()


async def rollups_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    refresher = RollupRefresher(app[ROLLUPS], config.rollups, app[CLOCK], config.ingest.retention_ms, app[MARKS])
    app[REFRESHER] = refresher
    refresher.start()
    yield
    await refresher.close(config.server.shutdown_timeout)


async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    db = app[DATABASE]
    pipeline = Pipeline(
        db,
        await EventWriter.prepare(db, Grouping.of(db, config.ingest)),
        config.ingest,
        app[CLOCK],
        listeners=(app[REFRESHER].mark, app[LIVE_BUS].publish if LIVE_BUS in app else app[LIVE_HUB].publish),
        priority=app[READ_PRIORITY],
    )
    app[PIPELINE] = pipeline
    pipeline.start()
    log.info("ingest pipeline: %d actors", pipeline.actor_count)
    yield
    await pipeline.close(config.server.shutdown_timeout)


async def close_live_connections(app: web.Application) -> None:
    """on_shutdown: websockets never finish by themselves, so close them before handlers are awaited."""
    await app[LIVE_HUB].close()
