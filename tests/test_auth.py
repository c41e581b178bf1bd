"""API keys and rate limits: tokens, the key ring shared through Cassandra, scopes, revocation and 429s."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, start

from cql.apikeys import ApiKeyStore
from cql.driver import Database
from daemon.auth.ratelimit import TokenBucket
from daemon.auth.tokens import Scope, Token
from web.app import create_app
from web.auth import INGEST_ROUTES, OPEN_ROUTES
from web.resources import StartupError

ROOT = Path(__file__).resolve().parents[1]


# --- tokens and buckets (no node) ------------------------------------------------------------


def test_a_minted_token_parses_back_to_its_parts_and_its_digest() -> None:
    for scope in Scope:
        token = Token.mint(scope)
        text = str(token)
        assert text.startswith(f"pss_{scope.tag}_{token.key_id}_")
        assert Token.parse(text) == token
        assert Token.parse(text).digest == token.digest  # type: ignore[union-attr]
    # token_urlsafe secrets may contain "_" and "-": only the first three underscores split.
    assert Token.parse("pss_read_0123456789abcdef_a_b-c") == Token(Scope.READ, "0123456789abcdef", "a_b-c")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Bearer",
        "pss_read_0123456789abcdef_",
        "pss_admin_0123456789abcdef_x",
        "pss_read_XYZ_x",
        "xyz_read_0123456789abcdef_x",
        "pss_read_0123456789abcdef",
    ],
)
def test_text_not_shaped_like_a_token_is_refused(text: str) -> None:
    assert Token.parse(text) is None


def test_a_bucket_refills_at_its_rate_and_lets_a_big_request_through_only_when_full() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, capacity=100, now=lambda: now[0])
    assert bucket.take(60) == 0.0
    assert bucket.take(60) == pytest.approx(2.0)  # 20 left, 40 short at 10/s
    now[0] += 2.0
    assert bucket.take(60) == 0.0
    assert bucket.take(150) == pytest.approx(10.0)  # bigger than the bucket: needs it full
    now[0] += 10.0
    assert bucket.take(150) == 0.0  # let through, leaving 50 of debt
    assert bucket.wait_for_any() == pytest.approx(5.1)
    now[0] += 5.1
    assert bucket.wait_for_any() == 0.0


# --- against the real node ------------------------------------------------------------------


def test_every_open_and_ingest_route_exists_and_every_other_route_needs_a_read_key(shared_keyspace: str) -> None:
    routes = {route.resource.canonical for route in create_app(config_for(shared_keyspace)).router.routes()}
    assert INGEST_ROUTES <= routes
    assert OPEN_ROUTES - {"/openapi.json"} <= routes
    assert {"/v1/session-starts", "/v1/live", "/fetch/{country}/{hours}"} <= routes - OPEN_ROUTES - INGEST_ROUTES


@pytest.fixture
async def key_store(isolated_keyspace: str) -> AsyncIterator[ApiKeyStore]:
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    yield ApiKeyStore(db)
    await db.close()


async def create_key(store: ApiKeyStore, scope: Scope, name: str = "") -> Token:
    token = Token.mint(scope)
    await store.create(token.key_id, scope.value, name, token.digest)
    return token


def bearer(token: Token | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(scope: str, status: int) -> float:
    """pss_refused_requests_total for a scope and status (the process-wide registry the app records in)."""
    return REGISTRY.get_sample_value("pss_refused_requests_total", {"scope": scope, "status": str(status)}) or 0.0


KeyedClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def keyed_client(isolated_keyspace: str, aiohttp_client: AiohttpClient) -> KeyedClient:
    """An app (a replica) on the keyspace with keys; `auth` overrides [auth]."""

    async def make(**auth: Any) -> TestClient:
        return await aiohttp_client(create_app(config_for(isolated_keyspace, auth={"refresh": 0.2, **auth})))

    return make


async def test_with_keys_each_route_needs_a_valid_key_of_its_scope(
    key_store: ApiKeyStore, keyed_client: KeyedClient
) -> None:
    ingest, read = await create_key(key_store, Scope.INGEST), await create_key(key_store, Scope.READ)
    client = await keyed_client()
    event = [start(new_player(), str(uuid.uuid4()), "2016-11-30T10:00:00")]
    refused_before = {status: refused("ingest", status) for status in (401, 403)}

    missing = await post_events(client, event)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "scope ingest is required" in (await missing.json())["error"]
    wrong_secret = Token(ingest.scope, ingest.key_id, ingest.secret[:-1] + ("A" if ingest.secret[-1] != "A" else "B"))
    assert (await post_events(client, event, **bearer(wrong_secret))).status == 401
    assert (await post_events(client, event, Authorization="Basic dXNlcjpwYXNz")).status == 401
    wrong_scope = await post_events(client, event, **bearer(read))
    assert wrong_scope.status == 403
    assert "this route needs ingest" in (await wrong_scope.json())["error"]
    assert (await post_events(client, event, **bearer(ingest))).status == 200
    assert refused("ingest", 401) - refused_before[401] == 3
    assert refused("ingest", 403) - refused_before[403] == 1

    assert (await client.get("/v1/session-starts?hours=24")).status == 401
    assert (await client.get("/v1/session-starts?hours=24", headers=bearer(ingest))).status == 403
    assert (await client.get("/v1/session-starts?hours=24", headers=bearer(read))).status == 200
    assert (await client.get("/fetch/FI/24", headers=bearer(read))).status == 200
    for open_path in ("/healthz", "/readyz", "/"):
        assert (await client.get(open_path)).status == 200
    assert (await client.get("/no/such/route")).status == 404


async def test_the_live_feed_takes_a_token_in_its_query_because_browsers_cannot_set_headers(
    key_store: ApiKeyStore, keyed_client: KeyedClient
) -> None:
    read = await create_key(key_store, Scope.READ)
    client = await keyed_client()
    refused = await client.get("/v1/live", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert refused.status == 401
    ws = await client.ws_connect(f"/v1/live?token={read}")
    await ws.close()
    # Only the feed reads ?token=: other routes must not encourage tokens in URLs (and logs).
    assert (await client.get(f"/v1/session-starts?hours=1&token={read}")).status == 401


async def test_a_key_revoked_through_one_replica_stops_working_on_every_replica(
    key_store: ApiKeyStore, keyed_client: KeyedClient
) -> None:
    read = await create_key(key_store, Scope.READ)
    replicas = [await keyed_client(), await keyed_client()]
    for replica in replicas:
        assert (await replica.get("/v1/session-starts?hours=1", headers=bearer(read))).status == 200
    assert await key_store.revoke(read.key_id)
    revoked_at = time.monotonic()
    for replica in replicas:
        while (answer := await replica.get("/v1/session-starts?hours=1", headers=bearer(read))).status == 200:
            assert time.monotonic() - revoked_at < 10, "a revoked key still works after 10 s"
            await asyncio.sleep(0.05)
        assert answer.status == 401
        assert "was revoked" in (await answer.json())["error"]


async def test_reads_over_the_keys_rate_are_429_with_retry_after(
    key_store: ApiKeyStore, keyed_client: KeyedClient
) -> None:
    read, other = await create_key(key_store, Scope.READ), await create_key(key_store, Scope.READ)
    client = await keyed_client(read_requests_per_second=0.5, read_burst_requests=2)
    statuses = [(await client.get("/v1/session-starts?hours=1", headers=bearer(read))).status for _ in range(2)]
    assert statuses == [200, 200]
    limited = await client.get("/v1/session-starts?hours=1", headers=bearer(read))
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert read.key_id in (await limited.json())["error"]
    # Buckets are per key.
    assert (await client.get("/v1/session-starts?hours=1", headers=bearer(other))).status == 200


async def test_events_over_the_keys_rate_are_429_and_nothing_of_them_is_stored(
    key_store: ApiKeyStore, keyed_client: KeyedClient, cassandra_admin: Any, isolated_keyspace: str
) -> None:
    ingest, read = await create_key(key_store, Scope.INGEST), await create_key(key_store, Scope.READ)
    client = await keyed_client(ingest_events_per_second=1, ingest_burst_events=100)
    refused_before = refused("ingest", 429)
    player = new_player()
    events = [start(player, str(uuid.uuid4()), f"2016-11-30T10:{i // 60:02d}:{i % 60:02d}") for i in range(150)]
    # Bigger than the bucket, sent on a full bucket: through, leaving the key 20 events in debt.
    assert (await post_events(client, events[:120], **bearer(ingest))).status == 200
    # In debt: refused before the body is read.
    limited = await post_events(client, events[120:], **bearer(ingest))
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 20
    assert refused("ingest", 429) - refused_before == 1
    rows = cassandra_admin.execute(
        f"SELECT session_id FROM {isolated_keyspace}.sessions_by_player WHERE player_id = %s", (player,)
    )
    assert len(list(rows)) == 120
    # Reads have their own bucket per key.
    assert (await client.get("/v1/session-starts?hours=1", headers=bearer(read))).status == 200


async def test_a_batch_larger_than_what_is_left_in_the_bucket_is_429_after_parsing(
    key_store: ApiKeyStore, keyed_client: KeyedClient, cassandra_admin: Any, isolated_keyspace: str
) -> None:
    ingest = await create_key(key_store, Scope.INGEST)
    client = await keyed_client(ingest_events_per_second=1, ingest_burst_events=100)
    limited_before = REGISTRY.get_sample_value("pss_events_total", {"outcome": "rate_limited"}) or 0
    player = new_player()
    events = [start(player, str(uuid.uuid4()), f"2016-11-30T11:00:{i:02d}") for i in range(60)]
    assert (await post_events(client, events[:30], **bearer(ingest))).status == 200
    limited = await post_events(client, events[30:], **bearer(ingest))  # 30 wanted, ~70 left: fine
    assert limited.status == 200
    too_many = await post_events(client, events, **bearer(ingest))  # 60 wanted, ~40 left
    assert too_many.status == 429
    assert "60 events" in (await too_many.json())["error"]
    assert REGISTRY.get_sample_value("pss_events_total", {"outcome": "rate_limited"}) - limited_before == 60
    rows = cassandra_admin.execute(
        f"SELECT session_id FROM {isolated_keyspace}.sessions_by_player WHERE player_id = %s", (player,)
    )
    assert len(list(rows)) == 60


async def test_without_keys_the_daemon_refuses_a_non_loopback_address_unless_anonymous_is_allowed(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, key_store: ApiKeyStore
) -> None:
    exposed = config_for(isolated_keyspace, server={"host": "0.0.0.0"})
    runner = web.AppRunner(create_app(exposed))
    try:
        with pytest.raises(StartupError, match="no API key exists and server.host '0.0.0.0' is not a loopback"):
            await runner.setup()
    finally:
        await runner.cleanup()  # closes what started before the refusal (the Cassandra session)
    allowed = config_for(isolated_keyspace, server={"host": "0.0.0.0"}, auth={"allow_anonymous": True})
    client = await aiohttp_client(create_app(allowed))
    assert (await client.get("/v1/session-starts?hours=1")).status == 200
    # With a key, a public address is fine: every request is checked.
    await create_key(key_store, Scope.READ)
    keyed = await aiohttp_client(create_app(exposed))
    assert (await keyed.get("/v1/session-starts?hours=1")).status == 401


def run_keys(keyspace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PSS_CASSANDRA_KEYSPACE": keyspace}
    return subprocess.run(
        [sys.executable, "-m", "daemon", "keys", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def test_the_keys_command_prints_a_token_once_lists_without_secrets_and_revokes(
    isolated_keyspace: str, keyed_client: KeyedClient
) -> None:
    created = await asyncio.to_thread(run_keys, isolated_keyspace, "create", "--scope", "read", "--name", "grafana")
    assert created.returncode == 0, created.stderr
    token = Token.parse(created.stdout.splitlines()[-1])
    assert token is not None and token.scope is Scope.READ
    client = await keyed_client()
    assert (await client.get("/v1/session-starts?hours=1", headers=bearer(token))).status == 200

    listed = await asyncio.to_thread(run_keys, isolated_keyspace, "list")
    assert listed.returncode == 0, listed.stderr
    assert token.key_id in listed.stdout and "grafana" in listed.stdout and "active" in listed.stdout
    assert token.secret not in listed.stdout

    revoked = await asyncio.to_thread(run_keys, isolated_keyspace, "revoke", token.key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in (await asyncio.to_thread(run_keys, isolated_keyspace, "list")).stdout
    unknown = await asyncio.to_thread(run_keys, isolated_keyspace, "revoke", "0" * 16)
    assert unknown.returncode == 1
    assert "no key with id" in unknown.stderr
