"""The daemon as a whole: health and readiness, graceful drain, the CLI's serve and rollup rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, session_pair, start

from daemon.core.config import Config
from web.app import create_app
from web.keys import PIPELINE

pytestmark = pytest.mark.cassandra

ROOT = Path(__file__).resolve().parent.parent


async def test_health_and_readiness(client: TestClient) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["actors"] == 2


async def test_readiness_reports_a_table_dropped_at_runtime(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any
) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    assert (await client.get("/readyz")).status == 200
    cassandra_admin.execute(f"DROP TABLE {isolated_keyspace}.compat_cursor")
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reason"] == (
        f"schema missing in keyspace {isolated_keyspace}: compat_cursor (run `python -m daemon schema apply`)"
    )


def test_serve_without_schema_fails_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "serve", "--port", str(free_port())],
        cwd=ROOT, env={**os.environ, "PSS_CASSANDRA_KEYSPACE": "pss_no_such_keyspace"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: schema missing in keyspace pss_no_such_keyspace: sessions_by_player, player_starts, country_starts,"
        " start_hours_by_country, starts_by_minute, rollup_counts, rollup_marks, compat_cursor, api_keys,"
        " storage_layout, schema_version"
        " (run `python -m daemon schema apply`)"
    )
    assert "Traceback" not in result.stderr


def test_serve_with_cassandra_unreachable_fails_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "serve", "--port", str(free_port())],
        cwd=ROOT, env={**os.environ, "PSS_CASSANDRA_PORT": str(free_port()), "PSS_CASSANDRA_CONNECT_TIMEOUT": "2"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach Cassandra at 127.0.0.1:")
    assert "Traceback" not in result.stderr


async def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = await client.get("/nope")
    assert missing.status == 404 and (await missing.json())["error"] == "Not Found"
    wrong = await client.get("/v1/events")
    assert wrong.status == 405 and "error" in await wrong.json()


async def test_shutdown_drains_accepted_events(shared_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any) -> None:
    """Events queued when shutdown starts are written before the Cassandra session closes."""
    config = config_for(shared_keyspace, ingest={"linger_ms": 500.0, "flush_events": 100_000, "max_queued_events": 100_000})
    client = await aiohttp_client(create_app(config))
    pipeline = client.app[PIPELINE]
    player = new_player()
    events = [start(player, str(uuid.uuid4()), "2016-11-26T10:00:00") for _ in range(50)]
    posting = asyncio.create_task(post_events(client, events))
    while pipeline.queued_events() == 0:  # wait until the events sit in an actor's inbox
        await asyncio.sleep(0.01)
    await client.close()  # the test server cancels the request; the actors still drain their inboxes
    with contextlib.suppress(aiohttp.ClientError):
        await posting
    rows = cassandra_admin.execute(
        f"SELECT session_id FROM {shared_keyspace}.sessions_by_player WHERE player_id = %s", (player,)
    )
    assert len(list(rows)) == 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.timeout(120)
def test_serve_becomes_ready_and_stops_on_sigterm(app_config: Config) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PSS_SERVER_PORT": str(port),
        "PSS_CASSANDRA_KEYSPACE": app_config.cassandra.keyspace,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.3)
            try:
                status, _ = get_json(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = 0
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert "ingest pipeline" in output


async def test_rollups_rebuild_recounts_lost_totals(isolated_keyspace: str, aiohttp_client: AiohttpClient, cassandra_admin: Any) -> None:
    client = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    player = new_player()
    events = [*session_pair(player, "2016-11-30T22:00:00", "2016-11-30T22:10:00", "NO"),
              start(player, str(uuid.uuid4()), "2016-11-30T23:59:00", "NO")]
    assert (await post_events(client, events)).status == 200
    await client.close()  # the final refresh writes the totals...
    cassandra_admin.execute(f"TRUNCATE {isolated_keyspace}.rollup_counts")  # ...which we then lose
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "rollups", "rebuild", "--since", "2016-11-30T00:00:00Z",
         "--until", "2016-12-01T00:00:00Z"],
        cwd=ROOT, env={**os.environ, "PSS_CASSANDRA_KEYSPACE": isolated_keyspace},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    assert (await (await fresh.get("/v1/session-starts?hours=3")).json())["countries"] == {"NO": 2}
