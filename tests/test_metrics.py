"""GET /metrics on its own listener, against the real node: event outcomes, route-pattern labels, no ids, binding."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cassandra import InvalidRequest, OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable
from cassandra.protocol import OverloadedErrorMessage
from conftest import AiohttpClient, config_for, end, new_player, post_events, session_pair, start
from prometheus_client.parser import text_string_to_metric_families

from cql.error_kinds import error_kind
from daemon.core.config import Config
from daemon.core.metrics import Outcome, Readings, count_events
from web.app import create_app
from web.keys import DATABASE
from web.metrics import METRICS_SITE
from web.resources import StartupError

pytestmark = pytest.mark.cassandra

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def serving(keyspace: str, aiohttp_client: AiohttpClient, host: str = "127.0.0.1") -> tuple[TestClient, Config]:
    """A test client of an app whose metrics listener is on `host` and a free port, and that app's config."""
    config = config_for(keyspace, metrics={"host": host, "port": free_port(host)})
    return await aiohttp_client(create_app(config)), config


async def scrape_text(config: Config, host: str | None = None) -> str:
    url = f"http://{host or config.metrics.host}:{config.metrics.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return await answer.text()


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def label_values(found: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample_name, labels in found if sample_name == name and label in dict(labels)}


def outcomes(found: Samples) -> dict[str, float]:
    return {outcome.value: value(found, "pss_events_total", outcome=outcome.value) for outcome in Outcome}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


async def test_event_outcomes_routes_and_readings_on_the_metrics_port(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    client, config = await serving(shared_keyspace, aiohttp_client)
    before = samples(await scrape_text(config))
    player = new_player()
    first, last = session_pair(player, "2016-11-30T10:00:00", "2016-11-30T10:30:00")
    events: list[Any] = [
        first,
        last,
        start(player, str(uuid.uuid4()), "2016-11-30T11:00:00"),
        {"event": "start", "player_id": player},  # rejected by index: fields missing
        start(player, str(uuid.uuid4()), "2016-12-05T00:00:00"),  # rejected: days after the service's now
        start(player, str(uuid.uuid4()), "2014-01-01T00:00:00"),  # discarded: older than the retention span
        end(player, str(uuid.uuid4()), "2014-01-02T00:00:00"),  # discarded
    ]
    answer = await post_events(client, events)
    assert answer.status == 400
    assert (await answer.json())["accepted"] == 3
    sessions = await client.get(f"/v1/players/{player}/sessions")
    assert sessions.status == 200
    assert (await client.get("/no/such/route")).status == 404

    text = await scrape_text(config)
    after = samples(text)
    assert delta(outcomes(after), outcomes(before)) == {
        "accepted": 3,
        "discarded": 2,
        "rejected": 2,
        "overloaded": 0,
        "failed": 0,
        "unauthorized": 0,
        "rate_limited": 0,
    }
    # Requests by the route's pattern and status, never by the path.
    routes = label_values(after, "pss_http_request_duration_seconds_count", "route")
    assert {"/v1/events", "/v1/players/{player_id}/sessions", "unmatched"} <= routes
    assert all(route.startswith("/") or route == "unmatched" for route in routes)
    assert (
        value(after, "pss_http_request_duration_seconds_count", method="POST", route="/v1/events", status="400")
        - value(before, "pss_http_request_duration_seconds_count", method="POST", route="/v1/events", status="400")
        == 1
    )
    # No player or session id anywhere in the output.
    for event in events:
        for field in ("player_id", "session_id"):
            if field in event:
                assert event[field] not in text
    assert "/no/such/route" not in text
    # The flush that stored them, and how long they waited for it.
    assert value(after, "pss_ingest_flush_events_count") > value(before, "pss_ingest_flush_events_count")
    assert value(after, "pss_ingest_flush_duration_seconds_count") > value(
        before, "pss_ingest_flush_duration_seconds_count"
    )
    assert value(after, "pss_ingest_wait_seconds_count") > value(before, "pss_ingest_wait_seconds_count")
    # This app's readings.
    assert value(after, "pss_ingest_queue_capacity_events") == config.ingest.max_queued_events
    assert value(after, "pss_ingest_queued_events") == 0  # everything acknowledged was written
    assert value(after, "pss_cassandra_hosts") >= value(after, "pss_cassandra_hosts_up") >= 1
    assert value(after, "pss_live_clients") == 0
    assert ("pss_rollup_recount_lag_seconds", frozenset()) in after
    assert ("pss_rollup_pending_periods", frozenset()) in after
    assert ("pss_live_bus_up", frozenset()) not in after  # no live.bus configured
    # Build info, the process and the garbage collector.
    assert label_values(after, "pss_build_info", "version")
    assert ("process_cpu_seconds_total", frozenset()) in after
    assert label_values(after, "python_gc_collections_total", "generation") == {"0", "1", "2"}


async def test_live_clients_are_counted(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    client, config = await serving(shared_keyspace, aiohttp_client)
    ws = await client.ws_connect("/v1/live")
    try:
        assert (await ws.receive_json())["type"] == "subscribed"
        assert value(samples(await scrape_text(config)), "pss_live_clients") == 1
    finally:
        await ws.close()


async def test_cassandra_request_errors_are_counted_by_kind(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    client, config = await serving(shared_keyspace, aiohttp_client)
    before = samples(await scrape_text(config))
    with pytest.raises(InvalidRequest, match="no_such_table"):  # refused by the node: "other"
        await client.app[DATABASE].execute(f"SELECT * FROM {shared_keyspace}.no_such_table")
    after = samples(await scrape_text(config))
    kinds = ("timeout", "unavailable", "overloaded", "other")
    assert label_values(after, "pss_cassandra_request_errors_total", "kind") == set(kinds)  # each shows, from 0
    errors = value(after, "pss_cassandra_request_errors_total", kind="other")
    assert errors - value(before, "pss_cassandra_request_errors_total", kind="other") == 1


def test_error_kinds_of_the_drivers_exceptions() -> None:
    assert error_kind(WriteTimeout("w", write_type=0)) == error_kind(ReadTimeout("r")) == "timeout"
    assert error_kind(OperationTimedOut("client side")) == "timeout"
    assert error_kind(Unavailable("too few replicas")) == "unavailable"
    assert error_kind(OverloadedErrorMessage(0x1001, "overloaded", {})) == "overloaded"
    assert error_kind(NoHostAvailable("none", {})) == "other"


async def test_unauthorized_and_rate_limited_outcomes_are_exposed(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    """What the API-key and rate-limit checks call for the events they refuse."""
    _, config = await serving(shared_keyspace, aiohttp_client)
    before = outcomes(samples(await scrape_text(config)))
    count_events(Outcome.UNAUTHORIZED, 5)
    count_events(Outcome.RATE_LIMITED, 7)
    count_events(Outcome.RATE_LIMITED, 0)
    changed = delta(outcomes(samples(await scrape_text(config))), before)
    assert (changed["unauthorized"], changed["rate_limited"]) == (5, 7)


async def test_the_listener_binds_the_configured_host_only(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    client, config = await serving(shared_keyspace, aiohttp_client, host="127.0.0.2")
    assert "pss_events_total" in await scrape_text(config)
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape_text(config, host="127.0.0.1")  # the same port on another address: nobody listens
    assert (await client.get("/metrics")).status == 404  # never on the API's port


async def test_port_zero_runs_no_listener(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    config = config_for(shared_keyspace, metrics={"port": 0})
    client = await aiohttp_client(create_app(config))
    assert METRICS_SITE not in client.app
    assert (await client.get("/healthz")).status == 200


async def test_a_taken_port_stops_the_start_with_one_line(shared_keyspace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = web.AppRunner(create_app(config_for(shared_keyspace, metrics={"port": port})))
        try:
            with pytest.raises(StartupError, match=f"metrics: cannot listen on 127.0.0.1:{port}: "):
                await runner.setup()
        finally:
            await runner.cleanup()  # the resources started before it close again


def test_readings_are_only_the_declared_ones() -> None:
    with pytest.raises(ValueError, match="no such reading: pss_nope"):
        Readings({"pss_nope": lambda: 1.0})
    assert [metric.name for metric in Readings({"pss_live_clients": lambda: 3}).collect()] == ["pss_live_clients"]
    assert list(Readings({"pss_live_bus_up": lambda: None}).collect()) == []  # None: left out


async def test_requests_on_several_routes_keep_the_label_set_bounded(
    shared_keyspace: str, aiohttp_client: AiohttpClient
) -> None:
    """Many players' and odd methods' requests add no label values beyond the routes and methods."""
    client, config = await serving(shared_keyspace, aiohttp_client)
    players = [new_player() for _ in range(5)]
    await asyncio.gather(*(client.get(f"/v1/players/{player}/sessions") for player in players))
    await client.request("PROPFIND", "/v1/events")  # one of the methods aiohttp parses (WebDAV)
    found = samples(await scrape_text(config))
    methods = label_values(found, "pss_http_request_duration_seconds_count", "method")
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods and "PROPFIND" not in methods
    assert not _mentions(found, players)


def _mentions(found: Samples, words: Iterable[str]) -> bool:
    return any(word in label for _, labels in found for pair in labels for label in pair for word in words)
