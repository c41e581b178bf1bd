"""Shared fixtures: a throwaway keyspace on the real Cassandra node, the app, and event builders."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import socket
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from daemon.core.config import Config, load_config
from daemon.core.config import replace as replace_config

DEMO_NOW = "2016-12-01T00:00:00Z"

# Tests run many daemons at once, in this process and as children: config.toml's fixed metrics port would collide.
# Off unless a test turns it on (tests/test_metrics.py, with a free port).
os.environ.setdefault("PSS_METRICS_PORT", "0")

AiohttpClient = Callable[..., Awaitable[TestClient]]


def _base_config() -> Config:
    """The checkout's config.toml plus PSS_* overrides: the node `make test` started."""
    return load_config()


def _admin_session(config: Config) -> Any:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=config.cassandra.local_dc), request_timeout=60
    )
    cluster = Cluster(
        list(config.cassandra.contact_points),
        port=config.cassandra.port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        return cluster, cluster.connect()
    except NoHostAvailable as exc:
        cluster.shutdown()
        pytest.fail(
            f"Cassandra is not reachable at {config.cassandra.contact_points}:{config.cassandra.port} "
            f"({exc}); start it with `make node` (make test does)",
            pytrace=False,
        )


def _create_keyspace(session: Any, config: Config, keyspace: str, span: int | None = None) -> None:
    """The schema's tables in `keyspace`, its country_starts partitions pinned at `span` hours (default: config)."""
    from cql.layout import SETTING
    from cql.schema import render_schema

    for statement in render_schema(config.cassandra, keyspace):
        session.execute(statement)
    span = span or config.cassandra.country_partition_hours
    session.execute(f"INSERT INTO {keyspace}.storage_layout (name, value) VALUES (%s, %s)", (SETTING, span))


@pytest.fixture(scope="session")
def cassandra_admin() -> Iterator[Any]:
    """A blocking driver session for set-up and for checking stored rows directly."""
    cluster, session = _admin_session(_base_config())
    yield session
    cluster.shutdown()


def create_keyspace(admin: Any, prefix: str, span: int | None = None) -> str:
    """A fresh keyspace named `<prefix>_<random>` with the schema (and `span`); the caller drops it."""
    keyspace = f"{prefix}_{secrets.token_hex(4)}"
    _create_keyspace(admin, _base_config(), keyspace, span)
    return keyspace


@pytest.fixture(scope="session")
def shared_keyspace(cassandra_admin: Any) -> Iterator[str]:
    """One fresh keyspace for the whole test session, dropped at the end."""
    keyspace = create_keyspace(cassandra_admin, "pss_test")
    yield keyspace
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def config_for(keyspace: str, **sections: dict[str, Any]) -> Config:
    """The base config pointed at `keyspace`, clock frozen at the demo's now, small and fast limits."""
    base = _base_config()
    overrides: dict[str, dict[str, Any]] = {
        "cassandra": {"keyspace": keyspace, "consistency": "LOCAL_QUORUM"},
        "clock": {"now": DEMO_NOW},
        "ingest": {"actors": 2, "linger_ms": 2.0, "write_retry_seconds": 2.0, "queue_wait": 2.0},
        "rollups": {"interval": 0.2},
        "server": {"shutdown_timeout": 10.0},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    replaced = {
        name: replace_config(getattr(base, name), **values) for name, values in overrides.items()
    }
    return replace_config(base, **replaced)


# Fixtures that build apps must request the keyspace before `aiohttp_client`: teardown runs in
# reverse, so the app (which flushes on shutdown) closes before its keyspace is dropped.
@pytest.fixture
def app_config(shared_keyspace: str) -> Config:
    return config_for(shared_keyspace)


@pytest.fixture
def isolated_keyspace(cassandra_admin: Any) -> Iterator[str]:
    """A keyspace of its own, for tests that count everything stored in a time window."""
    keyspace = create_keyspace(cassandra_admin, "pss_iso")
    yield keyspace
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.fixture
async def client(app_config: Config, aiohttp_client: AiohttpClient) -> TestClient:
    from web.app import create_app

    return await aiohttp_client(create_app(app_config))


# --- event builders -------------------------------------------------------------------------


def new_player() -> str:
    return uuid.uuid4().hex


def start(player: str, session: str, ts: str, country: str = "FI") -> dict[str, Any]:
    return {"event": "start", "player_id": player, "session_id": session, "ts": ts, "country": country}


def end(player: str, session: str, ts: str) -> dict[str, Any]:
    return {"event": "end", "player_id": player, "session_id": session, "ts": ts}


def session_pair(player: str, start_ts: str, end_ts: str, country: str = "FI") -> tuple[dict[str, Any], dict[str, Any]]:
    session = str(uuid.uuid4())
    return start(player, session, start_ts, country), end(player, session, end_ts)


async def post_events(client: TestClient, events: list[Any], fmt: str = "json", **headers: str) -> ClientResponse:
    """POST events as a JSON array or JSON Lines."""
    if fmt == "json":
        body = orjson.dumps(events)
        content_type = "application/json"
    else:
        body = b"\n".join(orjson.dumps(event) for event in events)
        content_type = "application/x-ndjson"
    # A BytesIO body: aiohttp warns (an error here) about large raw bytes bodies.
    return await client.post("/v1/events", data=io.BytesIO(body), headers={"Content-Type": content_type, **headers})


# --- the local multi-node cluster (tests marked `cluster`) ---------------------------------


@dataclass(frozen=True)
class LocalCluster:
    """The running cluster: `config` points the app at it and at `keyspace` (replication factor 3)."""

    config: Config
    admin: Any  # a blocking driver session on the cluster, for set-up and checks
    keyspace: str

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.config.cassandra.contact_points


@pytest.fixture(scope="session")
def cassandra_cluster() -> Iterator[LocalCluster]:
    """A 3-node cluster ([cluster] in config.toml) started once per session by the project's own code, or the one
    already running; stopped at the end only if this session started it (else left with every node up)."""
    from daemon.tools.node.cluster import start_cluster, stop_cluster
    from daemon.tools.node.process import NodeError

    base = _base_config()
    cluster = replace_config(base.cluster, nodes=3)
    try:
        info = start_cluster(cluster, base.node, say=print)
    except NodeError as exc:
        pytest.fail(f"{exc}\n--- {exc.source} ---\n" + "\n".join(line[:300] for line in exc.details), pytrace=False)
    keyspace = f"pss_cluster_{secrets.token_hex(4)}"
    cassandra = replace_config(
        base.cassandra,
        contact_points=info.layout.contact_points,
        port=cluster.native_port,
        keyspace=keyspace,
        replication_class="SimpleStrategy",
        replication_factor=3,
        consistency="LOCAL_QUORUM",
    )
    config = replace_config(base, cassandra=cassandra, cluster=cluster)
    try:
        driver, session = _admin_session(config)
        try:
            _create_keyspace(session, config, keyspace)
            yield LocalCluster(config, session, keyspace)
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        finally:
            driver.shutdown()
    finally:
        if info.started:
            stop_cluster(cluster, base.node, say=print)
        else:  # a cluster someone else runs: leave it as found, every node up
            start_cluster(cluster, base.node, say=print)


@pytest.fixture
def healthy_cluster(cassandra_cluster: LocalCluster) -> LocalCluster:
    """Every node up before the test starts (a failure test before it may have left some down)."""
    from daemon.tools.node.cluster import start_cluster

    start_cluster(cassandra_cluster.config.cluster, cassandra_cluster.config.node, say=print)
    return cassandra_cluster


# --- the live bus: a local redis-server -----------------------------------------------------

TEST_BUS_PORT = 6391  # beside `python -m daemon bus start`'s 6390, so a developer's server is left alone


def unused_port() -> int:
    """A free loopback port below the ephemeral range (32768+): a busy machine's client sockets never take it
    between this probe and its use, nor between a server's kill and its restart on it."""
    import random

    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000..31999")


def wait_ready(port: int, timeout: float = 60.0) -> None:
    """Until a `python -m daemon serve` child on `port` answers /readyz with 200 (blocking: tests run it as is)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as ready:
                if ready.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the daemon on port {port} did not become ready"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def redis_bus() -> Iterator[str]:
    """The `redis://` URL of a redis-server run by the project's bus tool (test-artifacts/redis, port 6391), or of
    the one this tool already runs there; stopped at the end only if this session started it."""
    from pathlib import Path

    from daemon.core.errors import CommandError
    from daemon.tools.bus.server import bus_url, start_bus, stop_bus

    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts" / "redis"
    bus = replace_config(_base_config().bus, dir=str(artifacts), host="127.0.0.1", port=TEST_BUS_PORT)
    try:
        info = start_bus(bus, say=print)
    except CommandError as exc:
        pytest.fail(f"cannot start the live bus's redis-server: {exc}", pytrace=False)
    yield bus_url(bus)
    if not info.reused:
        stop_bus(bus, say=print)


async def post_until_stored(client: TestClient, events: list[Any], budget: float = 90.0) -> int:
    """Retry as a client would (503 means: try again after Retry-After); returns the attempts it took."""
    deadline = time.monotonic() + budget
    attempts = 0
    while True:
        attempts += 1
        response = await post_events(client, events)
        if response.status == 200:
            return attempts
        assert response.status == 503, await response.text()
        assert time.monotonic() < deadline, "ingest did not recover after Cassandra came back"
        await asyncio.sleep(float(response.headers["Retry-After"]))
