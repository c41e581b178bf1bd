"""Durable rollup marks on the real node: ingest marks what it stores, and a replica that was
SIGKILLed with recounts pending has its work finished by another one."""

from __future__ import annotations

import asyncio
import calendar
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import AiohttpClient, config_for, new_player, post_events, session_pair, wait_ready

from daemon.rollups import ledger
from web.app import create_app
from web.keys import REFRESHER

pytestmark = pytest.mark.cassandra

ROOT = Path(__file__).resolve().parent.parent
NOW_MINUTE = 1_480_550_400 // 60
QUIET = {"interval": 3600.0, "poll": 3600.0}  # a refresher that never gets round to recounting


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def marks(cassandra_admin: Any, keyspace: str) -> set[tuple[str, int]]:
    rows = cassandra_admin.execute(f"SELECT level, period FROM {keyspace}.rollup_marks")
    return {(row.level, row.period) for row in rows}


def history(count: int) -> list[dict[str, Any]]:
    """Starts (with their ends) spread over the last three days, a few per minute."""
    events = []
    for index in range(count):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((NOW_MINUTE - 1 - index * 37) * 60 + index % 60))
        events.extend(session_pair(new_player(), ts, ts, "FI" if index % 2 else "SE"))
    return events


async def test_every_acknowledged_start_leaves_a_mark_until_it_is_recounted(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace, rollups=QUIET)))
    events = history(40)
    assert (await post_events(client, events)).status == 200
    minutes = {
        ("minute", calendar.timegm(time.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S")) // 60)
        for e in events if e["event"] == "start"
    }
    assert marks(cassandra_admin, isolated_keyspace) == minutes  # durable before the 200, one per minute
    # A round clears marks written before its start less the clock-skew margin; the rest (here all,
    # as they are seconds old) survive it and are recounted by this replica's next round.
    await client.app[REFRESHER].refresh()
    assert marks(cassandra_admin, isolated_keyspace)  # written within the margin: kept
    await asyncio.sleep(ledger.CLOCK_SKEW_MARGIN_US / 1e6 + 0.1)
    await client.app[REFRESHER].refresh()
    assert marks(cassandra_admin, isolated_keyspace) == set()  # recounted: minutes, hours, days and months


async def test_a_round_that_kept_fresh_marks_is_followed_once_the_margin_has_passed(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    # Rounds only when woken (poll never comes): the load's end wakes one within `interval`, whose
    # clears spare the marks written in the margin before it; the next round must not wait for a poll.
    config = config_for(isolated_keyspace, rollups={"interval": 0.2, "poll": 3600.0})
    client = await aiohttp_client(create_app(config))
    assert (await post_events(client, history(40))).status == 200
    deadline = time.monotonic() + 30
    while {level for level, _ in marks(cassandra_admin, isolated_keyspace)} & {"minute"}:
        assert time.monotonic() < deadline, "minute marks left for the poll"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
async def test_a_killed_replicas_pending_recounts_are_adopted_by_another(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    port = free_port()
    env = {
        **os.environ, "PSS_SERVER_PORT": str(port), "PSS_CASSANDRA_KEYSPACE": isolated_keyspace,
        "PSS_ROLLUPS_INTERVAL": "3600", "PSS_ROLLUPS_POLL": "3600", "PSS_INGEST_ACTORS": "2",
    }
    doomed = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    events = history(60)
    try:
        wait_ready(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events", data=orjson.dumps(events),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200  # acknowledged: stored and marked
    finally:
        doomed.send_signal(signal.SIGKILL)  # no final refresh: the totals are left to another replica
        doomed.wait(timeout=30)
    assert cassandra_admin.execute(f"SELECT count(*) FROM {isolated_keyspace}.rollup_counts").one()[0] == 0

    survivor = await aiohttp_client(
        create_app(config_for(isolated_keyspace, rollups={"interval": 0.1, "poll": 0.2, "adopt_after": 0.0}))
    )
    expected = {"FI": 30, "SE": 30}
    deadline = time.monotonic() + 60
    while True:
        body = await (await survivor.get("/v1/session-starts?hours=96")).json()
        if body["countries"] == expected and not marks(cassandra_admin, isolated_keyspace):
            break
        assert time.monotonic() < deadline, f"totals {body['countries']} never reached {expected}"
        await survivor.app[REFRESHER].refresh()
