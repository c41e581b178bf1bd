"""Shared fixtures: a throwaway keyspace on the real Cassandra node, the app, and event builders."""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from daemon.core.config import Config, load_config
from daemon.core.config import replace as replace_config

DEMO_NOW = "2016-12-01T00:00:00Z"

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


def _create_keyspace(session: Any, config: Config, keyspace: str) -> None:
    from cql.schema import render_schema

    for statement in render_schema(config.cassandra, keyspace):
        session.execute(statement)


@pytest.fixture(scope="session")
def cassandra_admin() -> Iterator[Any]:
    """A blocking driver session for set-up and for checking stored rows directly."""
    cluster, session = _admin_session(_base_config())
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def shared_keyspace(cassandra_admin: Any) -> Iterator[str]:
    """One fresh keyspace for the whole test session, dropped at the end."""
    keyspace = f"pss_test_{secrets.token_hex(4)}"
    _create_keyspace(cassandra_admin, _base_config(), keyspace)
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
    keyspace = f"pss_iso_{secrets.token_hex(4)}"
    _create_keyspace(cassandra_admin, _base_config(), keyspace)
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
