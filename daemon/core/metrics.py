"""Every Prometheus metric of the service, defined once; the layers above record, `web/metrics.py` serves them.

Counters and histograms live in prometheus-client's default registry (with its process, platform and GC
collectors), so any layer records with one call and no plumbing. They are process-wide: a process that runs
several apps (the tests) sums them. What a running app already keeps (queue depth, connected clients, hosts
up) is not counted twice: it is read when scraped, through `Readings`, one per app.

Recording is per request, per flush or per error, never per event in a Python loop. Labels take a bounded set
of values only: a route's pattern (`/v1/players/{player_id}/sessions`), a status, an outcome or error kind,
never a player or session id.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from importlib import metadata

from prometheus_client import Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Outcome(StrEnum):
    """What became of an event posted to the service (the `outcome` label of `pss_events_total`)."""

    ACCEPTED = "accepted"  # stored and acknowledged
    DISCARDED = "discarded"  # older than the retention span: acknowledged, not stored
    REJECTED = "rejected"  # invalid, reported by index
    OVERLOADED = "overloaded"  # no room in the ingest queues within queue_wait (503)
    FAILED = "failed"  # Cassandra did not acknowledge it past the retries, or shutdown (503)
    UNAUTHORIZED = "unauthorized"  # refused for its API key (401/403)
    RATE_LIMITED = "rate_limited"  # refused by its key's rate limit (429)


EVENTS = Counter("pss_events", "Events posted to the service, by what became of them", ["outcome"])
_EVENTS_BY_OUTCOME = {outcome: EVENTS.labels(outcome.value) for outcome in Outcome}  # every outcome shows, from 0


def count_events(outcome: Outcome, count: int) -> None:
    """Count `count` events with `outcome`; one call per request.

    The API-key and rate-limit checks call it with UNAUTHORIZED or RATE_LIMITED for the events of a
    request they refuse. (A request refused before its body is read has no event count; it still shows
    in `pss_http_request_duration_seconds` under its status, 401, 403 or 429.)
    """
    if count:
        _EVENTS_BY_OUTCOME[outcome].inc(count)


REFUSED = Counter(
    "pss_refused_requests",
    "Requests refused for their API key, by the scope the route needs and the status (401, 403, 429)",
    ["scope", "status"],
)


def count_refusal(scope: str, status: int) -> None:
    """One refused request. Its events, when it had a body, are not read, so not in pss_events_total; a batch
    refused by its key's rate limit after parsing is counted there too (rate_limited)."""
    REFUSED.labels(scope, str(status)).inc()


# Latency buckets from 1 ms (a query served from cache) to 60 s (a 100,000-event POST behind a full queue).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUEST_SECONDS = Histogram(
    "pss_http_request_duration_seconds",
    "HTTP requests by method, route pattern and status (a websocket's lasts as long as its connection)",
    ["method", "route", "status"],
    buckets=_SECONDS,
)
INGEST_WAIT_SECONDS = Histogram(
    "pss_ingest_wait_seconds",
    "From a request's arrival at the pipeline (before admission) to the start of the write of its events, "
    "one observation per parcel (a request's events for one actor)",
    buckets=_SECONDS,
)
FLUSH_SECONDS = Histogram(
    "pss_ingest_flush_duration_seconds",
    "An actor's flush: its rows and rollup marks written (retries included), or given up",
    buckets=_SECONDS,
)
FLUSH_EVENTS = Histogram(
    "pss_ingest_flush_events",
    "Events per flush",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000),
)

CASSANDRA_ERROR_KINDS = ("timeout", "unavailable", "overloaded", "other")
CASSANDRA_ERRORS = Counter(
    "pss_cassandra_request_errors",
    "Cassandra requests that failed, by kind (a retried write counts each try)",
    ["kind"],
)
_CASSANDRA_ERRORS_BY_KIND = {kind: CASSANDRA_ERRORS.labels(kind) for kind in CASSANDRA_ERROR_KINDS}


def count_cassandra_error(kind: str) -> None:
    """One failed request of `kind` (one of CASSANDRA_ERROR_KINDS); safe from the driver's threads."""
    _CASSANDRA_ERRORS_BY_KIND[kind].inc()


LIVE_DROPPED_STARTS = Counter(
    "pss_live_dropped_starts", "Session starts dropped for websocket clients whose outbox was full"
)
LIVE_EVICTED = Counter("pss_live_evicted_clients", "Websocket clients closed for lagging (4000)")

LIVE_BUS_ERROR_KINDS = ("down", "append", "entry")
LIVE_BUS_ERRORS = Counter(
    "pss_live_bus_errors",
    "Live bus failures: a read or append that failed and left the bus down (each try while Redis is away), "
    "an append Redis refused, a stream entry skipped as unreadable",
    ["kind"],
)
_LIVE_BUS_ERRORS_BY_KIND = {kind: LIVE_BUS_ERRORS.labels(kind) for kind in LIVE_BUS_ERROR_KINDS}


def count_live_bus_error(kind: str) -> None:
    """One live bus failure of `kind` (one of LIVE_BUS_ERROR_KINDS)."""
    _LIVE_BUS_ERRORS_BY_KIND[kind].inc()


def _version() -> str:
    try:
        return metadata.version("player-session-service")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


BUILD_INFO = Info("pss_build", "The running service's version and Python")
BUILD_INFO.info({"version": _version(), "python": platform.python_version(), "implementation": sys.implementation.name})

# Gauges of a running app, read when scraped: name → help. `web/metrics.py` gives each a reader.
READINGS = {
    "pss_ingest_queued_events": "Events admitted and not yet written (ingest.max_queued_events bounds it)",
    "pss_ingest_queue_capacity_events": "ingest.max_queued_events: room for events admitted and not yet written",
    "pss_cassandra_hosts": "Cassandra hosts the driver knows",
    "pss_cassandra_hosts_up": "Cassandra hosts the driver considers up",
    "pss_live_clients": "Websocket clients connected to the live feed",
    "pss_live_bus_up": "1 while the live bus (Redis) is up, 0 while down; absent without live.bus",
    "pss_rollup_recount_lag_seconds": "Seconds since the start of the last recount round that recounted every "
    "due period: starts stored before then are in the rollups",
    "pss_rollup_pending_periods": "Periods marked for a recount and not recounted yet",
}


class Readings(Collector):
    """The READINGS gauges of one app, each read by its reader at scrape time (a reader returning None is left
    out); registered in the app's own registry, so several apps in one process do not collide."""

    def __init__(self, readers: Mapping[str, Callable[[], float | None]]) -> None:
        unknown = set(readers) - set(READINGS)
        if unknown:
            raise ValueError(f"no such reading: {', '.join(sorted(unknown))}")
        self._readers = dict(readers)

    def collect(self) -> Iterator[Metric]:
        for name, read in self._readers.items():
            value = read()
            if value is not None:
                yield GaugeMetricFamily(name, READINGS[name], value=value)
