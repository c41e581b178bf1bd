"""Typed application state: every resource the handlers share, declared in one place."""

from __future__ import annotations

from aiohttp import web

from cql.driver import Database
from cql.pending import PendingMarks
from cql.reads import Reads
from cql.rollups import RollupStore
from daemon.auth.access import Access
from daemon.compat.rawfile import CompatFeed
from daemon.core.clock import Clock
from daemon.core.config import Config
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.priority import ReadPriority
from daemon.live.bus import LiveBus
from daemon.live.hub import LiveHub
from daemon.rollups.refresher import RollupRefresher
from web.counting import SharedCounts

CONFIG = web.AppKey("config", Config)
ACCESS = web.AppKey("access", Access)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", Database)
READS = web.AppKey("reads", Reads)
ROLLUPS = web.AppKey("rollups", RollupStore)
COUNTS = web.AppKey("counts", SharedCounts)
MARKS = web.AppKey("marks", PendingMarks)
REFRESHER = web.AppKey("refresher", RollupRefresher)
LIVE_HUB = web.AppKey("live_hub", LiveHub)
LIVE_BUS = web.AppKey("live_bus", LiveBus)  # only with live.bus set
PIPELINE = web.AppKey("pipeline", Pipeline)
READ_PRIORITY = web.AppKey("read_priority", ReadPriority)
COMPAT_FEED = web.AppKey("compat_feed", CompatFeed)

# Per-request state. REQUEST_ID: set for every request by web/observe.py (also the X-Request-Id answer header).
# KEY_ID: the id of the API key a request was allowed with, set by the auth check; the access log shows it (never
# the token or its secret), "-" when unset.
REQUEST_ID = web.RequestKey("request_id", str)
KEY_ID = web.RequestKey("key_id", str)
