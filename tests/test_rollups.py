"""The rollup refresher on the real node: ended periods only, unchanged recounts not rewritten."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, new_player, post_events, start

from web.app import create_app
from web.keys import REFRESHER

pytestmark = pytest.mark.cassandra

# Epoch minutes around the demo clock, 2016-12-01T00:00:00Z.
NOW_MINUTE = 1_480_550_400 // 60


@pytest.fixture
async def iso_client(isolated_keyspace: str, aiohttp_client: AiohttpClient) -> TestClient:
    return await aiohttp_client(create_app(config_for(isolated_keyspace)))


def minute_row(admin: Any, keyspace: str, minute: int) -> tuple[dict[str, int], int] | None:
    """(counts, write time in µs) of a minute's rollup row, or None when it was never written."""
    rows = list(
        admin.execute(
            f"SELECT counts, writetime(counts) AS written FROM {keyspace}.rollup_counts"
            " WHERE level = 'minute' AND bucket = %s AND period = %s",
            (minute // 60, minute),
        )
    )
    return (orjson.loads(rows[0].counts), rows[0].written) if rows else None


async def test_a_recount_that_changes_nothing_is_not_rewritten(
    iso_client: TestClient, cassandra_admin: Any, isolated_keyspace: str
) -> None:
    first = start(new_player(), str(uuid.uuid4()), "2016-11-30T23:30:10", "IS")
    minute = NOW_MINUTE - 30
    assert (await post_events(iso_client, [first])).status == 200
    await iso_client.app[REFRESHER].refresh()
    counts, written = minute_row(cassandra_admin, isolated_keyspace, minute) or ({}, 0)
    assert counts == {"IS": 1}
    assert (await post_events(iso_client, [first, first])).status == 200  # a retried request
    await iso_client.app[REFRESHER].refresh()
    assert minute_row(cassandra_admin, isolated_keyspace, minute) == ({"IS": 1}, written)
    second = start(new_player(), str(uuid.uuid4()), "2016-11-30T23:30:50", "IS")
    assert (await post_events(iso_client, [second])).status == 200
    await iso_client.app[REFRESHER].refresh()
    counts, rewritten = minute_row(cassandra_admin, isolated_keyspace, minute) or ({}, 0)
    assert counts == {"IS": 2} and rewritten > written
    body = await (await iso_client.get("/v1/session-starts?hours=1")).json()
    assert body["countries"] == {"IS": 2}


async def test_open_periods_wait_until_they_end_or_the_daemon_stops(
    iso_client: TestClient, cassandra_admin: Any, isolated_keyspace: str
) -> None:
    """The clock is frozen at midnight: a start a few seconds later is in a minute that has not
    ended, which no window ending now can hold whole; it is counted at shutdown."""
    past = start(new_player(), str(uuid.uuid4()), "2016-11-30T23:59:30", "MT")
    future = start(new_player(), str(uuid.uuid4()), "2016-12-01T00:00:20", "MT")
    assert (await post_events(iso_client, [past, future])).status == 200
    await iso_client.app[REFRESHER].refresh()
    assert minute_row(cassandra_admin, isolated_keyspace, NOW_MINUTE - 1) is not None
    assert minute_row(cassandra_admin, isolated_keyspace, NOW_MINUTE) is None
    body = await (await iso_client.get("/v1/session-starts?hours=1")).json()
    assert body["countries"] == {"MT": 1}
    await iso_client.close()
    counts, _ = minute_row(cassandra_admin, isolated_keyspace, NOW_MINUTE) or ({}, 0)
    assert counts == {"MT": 1}
