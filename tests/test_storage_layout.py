"""The span of a country_starts partition: pinned by the first schema apply, then kept; 1 hour for older keyspaces."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aiohttp import web
from conftest import AiohttpClient, config_for, new_player, post_events, start

from cql.driver import Database
from cql.layout import SETTING, partition_hours, pin_partition_hours
from cql.schema import COMPONENT, SCHEMA_VERSION, apply_schema, recorded_version
from daemon.core.config import replace as replace_config
from daemon.core.instants import MS_PER_HOUR, datetime_to_ms, parse_instant
from web.app import create_app
from web.keys import READS
from web.resources import StartupError

pytestmark = pytest.mark.cassandra


def forget_layout(admin: Any, keyspace: str, version: int | None) -> None:
    """The keyspace as an older `schema apply` left it: no span recorded, `version` (None: never applied)."""
    admin.execute(f"DELETE FROM {keyspace}.storage_layout WHERE name = %s", (SETTING,))
    if version is None:
        admin.execute(f"DELETE FROM {keyspace}.schema_version WHERE component = %s", (COMPONENT,))
    else:
        admin.execute(f"UPDATE {keyspace}.schema_version SET version = %s WHERE component = %s", (version, COMPONENT))


async def apply_with_span(keyspace: str, span: int) -> int:
    """`schema apply` with cassandra.country_partition_hours = span; the span the keyspace then records."""
    config = config_for(keyspace)
    cassandra = replace_config(config.cassandra, country_partition_hours=span)
    db = await Database.connect(cassandra)
    try:
        await apply_schema(db, cassandra, keyspace)
        assert await recorded_version(db, keyspace) == SCHEMA_VERSION
        return await partition_hours(db)
    finally:
        await db.close()


async def test_the_first_apply_pins_the_configured_span_and_later_ones_keep_it(
    isolated_keyspace: str, cassandra_admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    forget_layout(cassandra_admin, isolated_keyspace, None)
    assert await apply_with_span(isolated_keyspace, 6) == 6
    with caplog.at_level(logging.WARNING, logger="cql.schema"):
        assert await apply_with_span(isolated_keyspace, 24) == 6
    assert "keeps country_starts partitions of 6 hour(s)" in caplog.text


async def test_replicas_applying_different_spans_at_once_agree_on_one(
    isolated_keyspace: str, cassandra_admin: Any
) -> None:
    forget_layout(cassandra_admin, isolated_keyspace, None)
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    try:
        kept = await asyncio.gather(*(pin_partition_hours(db, isolated_keyspace, span) for span in (24, 6, 1, 12)))
        assert len(set(kept)) == 1 and await partition_hours(db) == kept[0]
        with pytest.raises(ValueError, match="must be one of"):
            await pin_partition_hours(db, isolated_keyspace, 5)  # does not tile a day
    finally:
        await db.close()


async def test_a_daemon_refuses_a_keyspace_whose_apply_stopped_before_the_pin(
    isolated_keyspace: str, cassandra_admin: Any, aiohttp_client: AiohttpClient
) -> None:
    # Every table exists, but the apply was cut off before it recorded the span: a daemon that
    # guessed would write partitions the next apply's pin might contradict.
    forget_layout(cassandra_admin, isolated_keyspace, None)
    runner = web.AppRunner(create_app(config_for(isolated_keyspace)))
    with pytest.raises(StartupError, match="records no country_partition_hours"):
        await runner.setup()  # the start-up a daemon runs before it listens
    await runner.cleanup()
    assert await apply_with_span(isolated_keyspace, 6) == 6
    client = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    assert client.app[READS].partition_hours == 6


async def test_a_keyspace_of_hour_partitions_keeps_them_and_its_starts_stay_listed(
    isolated_keyspace: str, cassandra_admin: Any, aiohttp_client: AiohttpClient
) -> None:
    # As a version 5 apply left it: no span recorded; its rows sit in one partition per hour.
    forget_layout(cassandra_admin, isolated_keyspace, 5)
    assert await apply_with_span(isolated_keyspace, 24) == 1  # the config's default does not move them
    client = await aiohttp_client(create_app(config_for(isolated_keyspace)))
    assert client.app[READS].partition_hours == 1
    player = new_player()
    moments = ["2016-11-30T23:59:59", "2016-11-30T01:00:00", "2016-11-29T23:00:00"]
    events = [start(player, str(uuid.uuid4()), moment, "NO") for moment in moments]
    assert (await post_events(client, events)).status == 200
    stored = cassandra_admin.execute(f"SELECT country, hour_desc FROM {isolated_keyspace}.country_starts")
    hour_keys = {row.hour_desc for row in stored if row.country == "NO"}
    assert hour_keys == {-(datetime_to_ms(parse_instant(moment)) // MS_PER_HOUR) for moment in moments}  # as v5 did
    listed = await (await client.get("/v1/countries/NO/session-starts?hours=48")).json()
    assert [s["session_id"] for s in listed["starts"]] == [e["session_id"] for e in events]
