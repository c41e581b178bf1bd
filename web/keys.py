"""Typed application state: every resource the handlers share, declared in one place."""

from __future__ import annotations

from aiohttp import web

from cql.driver import Database
from cql.reads import Reads
from cql.rollups import RollupStore
from daemon.actors import Pipeline
from daemon.clock import Clock
from daemon.config import Config
from daemon.live import LiveHub
from daemon.rawfile import CompatFeed
from daemon.rollups import RollupRefresher

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", Database)
READS = web.AppKey("reads", Reads)
ROLLUPS = web.AppKey("rollups", RollupStore)
REFRESHER = web.AppKey("refresher", RollupRefresher)
LIVE_HUB = web.AppKey("live_hub", LiveHub)
PIPELINE = web.AppKey("pipeline", Pipeline)
COMPAT_FEED = web.AppKey("compat_feed", CompatFeed)
