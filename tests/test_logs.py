"""log.format text and json, request ids (X-Request-Id) and the access log's key id, captured and parsed."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from conftest import AiohttpClient, new_player, unused_port, wait_ready

from daemon.core.config import Config
from daemon.core.logs import TEXT_FORMAT, log_handler
from web.access_log import AccessLogger, access_logger
from web.app import create_app
from web.keys import KEY_ID

pytestmark = pytest.mark.cassandra

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "pss_ing_k1_s3cr3t-never-logged"


@pytest.fixture(params=["json", "text"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    """Every record, as the daemon's handler for that log.format writes it."""
    stream = io.StringIO()
    handler = log_handler(request.param, stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield request.param, stream
    root.removeHandler(handler)
    root.setLevel(level)


@web.middleware
async def pretend_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for the API-key check: it sets the key's id for the access log."""
    if request.headers.get("Authorization") == f"Bearer {TOKEN}":
        request[KEY_ID] = "k1"
    return await handler(request)


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def logged_client(config: Config, aiohttp_client: AiohttpClient) -> TestClient:
    app = create_app(config)
    app.middlewares.append(pretend_auth)
    app.router.add_get("/broken", broken)
    server = TestServer(app)
    # Started here: pytest-aiohttp's server_kwargs do not reach the runner, where the access logger is chosen.
    await server.start_server(access_log_class=AccessLogger, access_log=access_logger())
    return await aiohttp_client(server)


async def test_request_ids_are_answered_and_logged(
    captured: tuple[str, io.StringIO], app_config: Config, aiohttp_client: AiohttpClient
) -> None:
    log_format, stream = captured
    client = await logged_client(app_config, aiohttp_client)
    player = new_player()
    answer = await client.get(
        f"/v1/players/{player}/sessions",
        headers={"X-Request-Id": "trace-42.a:b", "Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status == 200 and answer.headers["X-Request-Id"] == "trace-42.a:b"  # a sane one is kept
    for insane in ("x" * 129, "has space", 'quote"d', ""):
        replaced = (await client.get("/healthz", headers={"X-Request-Id": insane})).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), insane
    missing = await client.get("/no/such/route")  # JSON errors carry one too
    assert missing.status == 404 and re.fullmatch(r"[0-9a-f]{32}", missing.headers["X-Request-Id"])
    failed = await client.get("/broken", headers={"X-Request-Id": "boom-1"})
    assert failed.status == 500 and failed.headers["X-Request-Id"] == "boom-1"
    await client.close()  # access lines are written once each answer is sent; all are by now

    text = stream.getvalue()
    assert TOKEN not in text and "s3cr3t" not in text
    lines = text.splitlines()
    if log_format == "json":
        records = [orjson.loads(line) for line in lines]  # every line is one JSON object
        for record in records:
            assert {"ts", "level", "logger", "message"} <= record.keys()
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
        access = _one(records, logger="aiohttp.access", request_id="trace-42.a:b")
        assert access["route"] == "/v1/players/{player_id}/sessions"
        assert access["path"] == f"/v1/players/{player}/sessions"
        assert (access["method"], access["status"], access["key_id"]) == ("GET", 200, "k1")
        assert access["duration"] >= 0 and access["level"] == "INFO"
        assert _one(records, logger="aiohttp.access", request_id="boom-1")["key_id"] == "-"
        # A record logged while serving a request carries that request's fields.
        error = _one(records, logger="web.errors", request_id="boom-1")
        assert (error["level"], error["method"], error["path"]) == ("ERROR", "GET", "/broken")
        assert "RuntimeError: a bug" in error["exc"]
    else:
        pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR|DEBUG) [\w.]+: .*")
        starts = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
        assert starts and all(pattern.fullmatch(line) for line in starts)  # tracebacks continue on lines of their own
        access = [line for line in starts if "id=trace-42.a:b" in line]
        assert len(access) == 1
        assert re.search(rf" aiohttp\.access: GET /v1/players/{player}/sessions 200 \d+\.\d{{3}}s key=k1 ", access[0])
        assert TEXT_FORMAT.startswith("%(asctime)s")


def _one(records: list[dict[str, Any]], **fields: str) -> dict[str, Any]:
    found = [record for record in records if all(record.get(key) == want for key, want in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


@pytest.mark.timeout(120)
def test_serve_writes_json_lines_and_serves_metrics(app_config: Config) -> None:
    """`python -m daemon serve --access-log` with PSS_LOG_FORMAT=json: stderr is JSON lines, metrics on loopback."""
    port, metrics_port = unused_port(), unused_port()
    env = {
        **os.environ,
        "PSS_SERVER_PORT": str(port),
        "PSS_METRICS_PORT": str(metrics_port),
        "PSS_CASSANDRA_KEYSPACE": app_config.cassandra.keyspace,
        "PSS_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve", "--access-log"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(port)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-Id": "from-test"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.headers["X-Request-Id"] == "from-test"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
            assert b'pss_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}' in (
                answer.read()
            )
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    records = [orjson.loads(line) for line in stderr.splitlines()]  # nothing but JSON lines
    access = _one(records, logger="aiohttp.access", request_id="from-test")
    assert (access["route"], access["status"], access["key_id"]) == ("/healthz", 200, "-")
    assert any(record["message"] == f"metrics on http://127.0.0.1:{metrics_port}/metrics" for record in records)
