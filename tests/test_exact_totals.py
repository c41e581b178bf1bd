"""Totals include every acknowledged start at once, on the real node: after a shuffled backfill with no
recount yet, between recounts, beyond the direct-count budget (said in the body), and after a killed daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, session_pair, unused_port, wait_ready

from daemon.rollups import ledger
from web.app import create_app
from web.keys import REFRESHER

pytestmark = pytest.mark.cassandra

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2016, 12, 1, tzinfo=dt.UTC)
QUIET = {"interval": 3600.0, "poll": 3600.0}  # a refresher that never gets round to recounting by itself
WINDOWS = (0.5, 1, 5, 24, 24 * 7, 24 * 40, 8760)


def history(rng: random.Random, sessions: int, days: float) -> list[dict[str, Any]]:
    """Shuffled starts and ends of `sessions` sessions over the last `days` (a few in the same minutes)."""
    events: list[dict[str, Any]] = []
    for _ in range(sessions):
        begin = NOW - dt.timedelta(seconds=rng.randrange(0, int(days * 86400)))
        finish = begin + dt.timedelta(seconds=rng.randrange(30, 3600))
        fmt = "%Y-%m-%dT%H:%M:%S"
        events.extend(
            session_pair(new_player(), begin.strftime(fmt), finish.strftime(fmt), rng.choice(["FI", "SE", "EE"]))
        )
    rng.shuffle(events)
    return events


def expected(events: list[dict[str, Any]], hours: float) -> dict[str, int]:
    lower = NOW - dt.timedelta(hours=hours)
    counts = Counter(
        e["country"]
        for e in events
        if e["event"] == "start" and lower < dt.datetime.fromisoformat(e["ts"] + "+00:00") <= NOW
    )
    return dict(sorted(counts.items()))


async def post_all(client: TestClient, events: list[dict[str, Any]]) -> None:
    for offset in range(0, len(events), 100):
        assert (await post_events(client, events[offset : offset + 100])).status == 200


async def assert_exact(client: TestClient, events: list[dict[str, Any]]) -> None:
    for hours in WINDOWS:
        body = await (await client.get(f"/v1/session-starts?hours={hours}")).json()
        assert (body["countries"], body["settled"], body["pending_periods"]) == (expected(events, hours), True, 0), (
            hours
        )
        assert body["total"] == sum(body["countries"].values())


def count_rows(cassandra_admin: Any, keyspace: str, table: str) -> int:
    return int(cassandra_admin.execute(f"SELECT count(*) FROM {keyspace}.{table}").one()[0])


async def test_totals_count_every_acknowledged_start_before_and_between_recounts(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace, rollups=QUIET)))
    rng = random.Random(13)
    first = history(rng, 300, 40)
    await post_all(client, first)
    assert count_rows(cassandra_admin, isolated_keyspace, "rollup_counts") == 0  # nothing recounted yet
    await assert_exact(client, first)  # every start counted from the raw rows of its pending minute

    # A recount round old enough to clear the minutes' marks: minute, hour, day and month rollups are
    # written, the parents' marks (written during the round) stay. Then more starts land, many in
    # minutes and hours that already have rollups: totals mix settled rollups and raw counts.
    await asyncio.sleep(ledger.CLOCK_SKEW_MARGIN_US / 1e6 + 0.1)
    await client.app[REFRESHER].refresh()
    assert count_rows(cassandra_admin, isolated_keyspace, "rollup_counts") > 0
    levels = {row.level for row in cassandra_admin.execute(f"SELECT level FROM {isolated_keyspace}.rollup_marks")}
    assert levels == {"hour", "day", "month"}  # minutes settled, their parents still pending
    second = history(rng, 200, 40) + history(rng, 50, 0.2)
    await post_all(client, second)
    await assert_exact(client, first + second)

    await asyncio.sleep(ledger.CLOCK_SKEW_MARGIN_US / 1e6 + 0.1)
    await client.app[REFRESHER].refresh()  # clears the minutes of `second` and the parents of `first`
    third = history(rng, 100, 2)
    await post_all(client, third)
    await assert_exact(client, first + second + third)


async def test_too_many_pending_minutes_answer_from_rollups_and_say_so(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    client = await aiohttp_client(
        create_app(config_for(isolated_keyspace, rollups={**QUIET, "max_direct_minutes": 20}))
    )
    events = history(random.Random(5), 60, 3)
    await post_all(client, events)
    marked = count_rows(cassandra_admin, isolated_keyspace, "rollup_marks")
    assert marked > 20
    body = await (await client.get("/v1/session-starts?hours=96")).json()
    # Nothing recounted yet, so the rollups hold nothing; the body says how many periods are pending.
    assert (body["countries"], body["settled"], body["pending_periods"]) == ({}, False, marked)
    for _ in range(3):  # minutes, then (once the margin has passed) their hours, days and months
        await asyncio.sleep(ledger.CLOCK_SKEW_MARGIN_US / 1e6 + 0.1)
        await client.app[REFRESHER].refresh()
    body = await (await client.get("/v1/session-starts?hours=96")).json()
    assert (body["countries"], body["settled"], body["pending_periods"]) == (expected(events, 96), True, 0)


@pytest.mark.timeout(180)
async def test_a_new_daemon_answers_exactly_after_one_was_killed_with_recounts_pending(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    port = unused_port()
    env = {
        **os.environ,
        "PSS_SERVER_PORT": str(port),
        "PSS_CASSANDRA_KEYSPACE": isolated_keyspace,
        "PSS_ROLLUPS_INTERVAL": "3600",
        "PSS_ROLLUPS_POLL": "3600",
        "PSS_INGEST_ACTORS": "2",
    }
    doomed = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    events = history(random.Random(7), 200, 10)
    try:
        wait_ready(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events",
            data=orjson.dumps(events),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200  # acknowledged: stored and marked
    finally:
        doomed.send_signal(signal.SIGKILL)  # no final refresh
        doomed.wait(timeout=30)
    assert count_rows(cassandra_admin, isolated_keyspace, "rollup_counts") == 0
    assert count_rows(cassandra_admin, isolated_keyspace, "rollup_marks") > 0

    # A new daemon whose refresher would adopt the marks only after a minute: it answers exactly at once.
    survivor = await aiohttp_client(create_app(config_for(isolated_keyspace, rollups={**QUIET, "adopt_after": 60.0})))
    await assert_exact(survivor, events)
