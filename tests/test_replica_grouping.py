"""Rows of different partitions share a batch only when their replicas are the same hosts: checked against the
driver's token map of the real 3-node cluster (replication factor 1: three replica sets; 3: one), with the
fallback to one partition per batch, and with the rows read back exactly afterwards. On the single node, a
full batch stays below the node's batch size warning."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cassandra.query import BatchStatement, BoundStatement, Statement
from conftest import LocalCluster, _create_keyspace, config_for

from cql.batches import BatchBounds
from cql.driver import Database, first_error
from cql.grouping import PARTITION, PLAYERS_APART, REPLICA_SET, Grouping
from cql.replicas import ReplicaTracker
from cql.writes import EventWriter
from daemon.core.config import Config
from daemon.core.config import replace as replace_config
from daemon.core.events import Event
from daemon.core.instants import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE
from daemon.core.timebuckets import partition_hour

NOW_MS = 1_480_550_400_000  # 2016-12-01T00:00:00Z, the tests' frozen clock
RETENTION_MS = 365 * MS_PER_DAY
COUNTRIES = ("FI", "SE", "EE", "NO", "DK", "NA")


def shuffled_history(players: int = 60, sessions: int = 8) -> list[Event]:
    """Complete and half sessions over the last week, in an order unrelated to time or player."""
    events: list[Event] = []
    for p in range(players):
        player = uuid.uuid4().hex
        for s in range(sessions):
            session = uuid.uuid4()
            began = NOW_MS - (p * 7_919 + s * 104_729) * 1_000 % (7 * MS_PER_DAY) - MS_PER_HOUR
            if s % 5 != 4:  # every fifth session has only its end
                events.append(Event("start", player, session, began, COUNTRIES[(p + s) % len(COUNTRIES)]))
            if s % 7 != 6:  # every seventh only its start
                events.append(Event("end", player, session, began + (s + 1) * 60_000, None))
    events.sort(key=lambda event: event.session_id.int)
    return events


@dataclass
class Sent:
    statements: list[Statement]
    rows: list[list[BoundStatement]]  # per statement


def statements_of(writer: EventWriter, events: Sequence[Event]) -> Sent:
    """The writer's statements for `events`, with the rows each one carries (made in one pass, so ids hold)."""
    groups = writer.rows_by_partition(events, RETENTION_MS, NOW_MS)
    by_values = {id(statement.values): statement for group in groups.values() for statement in group}
    statements = writer.grouping.statements(groups)
    rows = []
    for statement in statements:
        if isinstance(statement, BatchStatement):
            rows.append([by_values[id(values)] for _, _, values in statement._statements_and_parameters])
        else:
            rows.append([statement])  # type: ignore[list-item]
    return Sent(statements, rows)


PLAYER_TABLES = {"sessions_by_player", "player_starts"}
PLAYER = "player"


def partition(statement: BoundStatement) -> tuple[str, bytes]:
    """A row's partition: its table and key, except that a player's two tables (its sessions and its start
    index, both keyed by the player id) are one: the writer keeps them in one group, as one player."""
    table = statement.prepared_statement.column_metadata[0].table_name
    return (PLAYER if table in PLAYER_TABLES else table), statement.routing_key


def replicas(db: Database, routing_key: bytes) -> frozenset[Any]:
    """The hosts the driver's public API names for a partition (independent of cql/replicas.py)."""
    return frozenset(db.cluster.metadata.get_replicas(db.keyspace, routing_key))


async def write(db: Database, statements: list[Statement]) -> None:
    assert first_error(await db.execute_many(statements, 64)) is None


async def stored(db: Database) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of the three event tables, as plain tuples."""
    queries = {
        "sessions": "SELECT player_id, session_id, start_ts, end_ts, country FROM {ks}.sessions_by_player",
        "country_starts": "SELECT country, hour_desc, ts, session_id, player_id FROM {ks}.country_starts",
        "minutes": "SELECT minute, ts, session_id, country FROM {ks}.starts_by_minute",
        "hours": "SELECT country, hour FROM {ks}.start_hours_by_country",
    }
    return {name: set(await db.execute(query.format(ks=db.keyspace))) for name, query in queries.items()}


def expected(events: Sequence[Event], span: int) -> dict[str, set[tuple[Any, ...]]]:
    """The rows `events` store, in a keyspace whose country_starts partitions span `span` hours."""

    def instant(ms: int | None) -> datetime | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)

    halves: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for event in events:
        row = halves.setdefault((event.player_id, event.session_id), {})
        if event.country is None:
            row["end"] = event.ts_ms
        else:
            row["start"], row["country"] = event.ts_ms, event.country
    starts = [event for event in events if event.country is not None]
    return {
        "sessions": {
            (player, session, instant(row.get("start")), instant(row.get("end")), row.get("country"))
            for (player, session), row in halves.items()
        },
        "country_starts": {
            (e.country, -partition_hour(e.ts_ms // MS_PER_HOUR, span), instant(e.ts_ms), e.session_id, e.player_id)
            for e in starts
        },
        "minutes": {(e.ts_ms // MS_PER_MINUTE, instant(e.ts_ms), e.session_id, e.country) for e in starts},
        "hours": {(e.country, e.ts_ms // MS_PER_HOUR) for e in starts},
    }


# --- the 3-node cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rf1_keyspace(cassandra_cluster: LocalCluster) -> Iterator[Config]:
    """A keyspace at replication factor 1 on the three nodes: each node's range is its own replica set."""
    keyspace = f"pss_rf1_{secrets.token_hex(4)}"
    cassandra = replace_config(
        cassandra_cluster.config.cassandra, keyspace=keyspace, replication_factor=1, consistency="ONE"
    )
    config = replace_config(cassandra_cluster.config, cassandra=cassandra)
    _create_keyspace(cassandra_cluster.admin, config, keyspace)
    yield config
    cassandra_cluster.admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


async def connect(config: Config) -> Database:
    return await Database.connect(config.cassandra)


async def truncate_when_every_node_is_up(db: Database, tables: Sequence[str], budget: float = 120.0) -> None:
    """TRUNCATE needs every node: the failure tests that ran before may have restarted one a moment ago, and
    gossip takes a while to see it back, so retry until it works or the budget is spent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    for table in tables:
        while True:
            try:
                await db.execute(f"TRUNCATE {db.keyspace}.{table}")
                break
            except Exception:  # NoHostAvailable / "Cannot achieve consistency level ALL" while a node rejoins
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(1.0)


@pytest.fixture
async def rf1_db(healthy_cluster: LocalCluster, rf1_keyspace: Config) -> AsyncIterator[Database]:
    db = await connect(rf1_keyspace)
    await truncate_when_every_node_is_up(
        db, ("sessions_by_player", "player_starts", "country_starts", "starts_by_minute", "start_hours_by_country")
    )
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def rf3_db(healthy_cluster: LocalCluster) -> AsyncIterator[Database]:
    db = await connect(healthy_cluster.config)
    try:
        yield db
    finally:
        await db.close()


async def seen_replica_sets(writer: EventWriter, expected: int, budget: float = 60.0) -> int | None:
    """The replica sets the writer groups by, once they are `expected` or the budget is spent: the driver builds
    its token map for a keyspace asynchronously, and again after the failure tests' nodes rejoin."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while (count := writer.grouping.replica_set_count()) != expected and loop.time() < deadline:
        await asyncio.sleep(0.5)
    return count


def grouping(db: Database, mode: str = REPLICA_SET, max_replica_sets: int = 64) -> Grouping:
    return Grouping(mode, BatchBounds(), max_replica_sets, ReplicaTracker(db.cluster, db.keyspace))


@pytest.mark.cluster
async def test_rf1_batches_never_mix_replica_sets_and_go_to_a_replica_of_their_set(rf1_db: Database) -> None:
    writer = await EventWriter.prepare(rf1_db, grouping(rf1_db))
    assert await seen_replica_sets(writer, 3) == 3
    events = shuffled_history()
    sent = statements_of(writer, events)
    sets_seen: set[frozenset[Any]] = set()
    packed = 0
    for statement, rows in zip(sent.statements, sent.rows, strict=True):
        sets = {replicas(rf1_db, row.routing_key) for row in rows}
        assert len(sets) == 1, f"a batch of {len(rows)} rows spans {len(sets)} replica sets"
        # Token-aware routing follows the batch's routing key: a partition of the set, so a replica of it.
        assert replicas(rf1_db, statement.routing_key) == next(iter(sets))
        sets_seen |= sets
        packed += len({partition(row) for row in rows}) > 1
        assert len(rows) <= BatchBounds().statements or len({partition(row) for row in rows}) == 1
    assert len(sets_seen) == 3
    assert packed >= len(sent.statements) // 2, "rows of different partitions were hardly ever packed together"
    # Every row exactly once, and each partition's rows in one statement when they fit in one batch.
    all_rows = [id(row) for rows in sent.rows for row in rows]
    assert len(all_rows) == len(set(all_rows)) == sum(map(len, writer.partition_groups(events, RETENTION_MS, NOW_MS)))
    await write(rf1_db, sent.statements)
    assert await stored(rf1_db) == expected(events, writer.partition_hours)


@pytest.mark.cluster
@pytest.mark.parametrize("mode, max_sets", [(PARTITION, 64), (REPLICA_SET, 2)], ids=["switched-off", "too-many-sets"])
async def test_rf1_falls_back_to_one_partition_per_batch(rf1_db: Database, mode: str, max_sets: int) -> None:
    writer = await EventWriter.prepare(rf1_db, grouping(rf1_db, mode, max_sets))
    events = shuffled_history(players=30)
    sent = statements_of(writer, events)
    assert all(len({partition(row) for row in rows}) == 1 for rows in sent.rows)
    assert len(sent.statements) >= len(writer.partition_groups(events, RETENTION_MS, NOW_MS))
    await write(rf1_db, sent.statements)
    assert await stored(rf1_db) == expected(events, writer.partition_hours)


@pytest.mark.cluster
async def test_rf3_is_one_replica_set_and_players_apart_keeps_each_player_alone(rf3_db: Database) -> None:
    apart = await EventWriter.prepare(rf3_db, grouping(rf3_db, PLAYERS_APART))
    assert await seen_replica_sets(apart, 1) == 1
    events = shuffled_history(players=40)
    sent = statements_of(apart, events)
    for rows in sent.rows:
        partitions = {partition(row) for row in rows}
        if any(kind == PLAYER for kind, _ in partitions):
            assert len(partitions) == 1, "a player's rows share a batch with another partition"
    assert max(len({partition(row) for row in rows}) for rows in sent.rows) > 10, "derived rows were not packed"
    together = await EventWriter.prepare(rf3_db, grouping(rf3_db))
    # Players of a few sessions: a player's rows (sessions and start index) must leave room in a batch's bytes.
    light = shuffled_history(players=40, sessions=2)
    players = [
        {partition(row) for row in rows if partition(row)[0] == PLAYER}
        for rows in statements_of(together, light).rows
    ]
    assert max(map(len, players)) > 1, "players of one replica set were not packed together"


# --- the single node ---------------------------------------------------------------------------


@pytest.fixture
async def node_db(isolated_keyspace: str) -> AsyncIterator[Database]:
    db = await Database.connect(config_for(isolated_keyspace).cassandra)
    try:
        yield db
    finally:
        await db.close()


@pytest.mark.cassandra
async def test_full_batches_stay_below_the_nodes_size_warning_and_store_every_row(node_db: Database) -> None:
    writer = await EventWriter.prepare(node_db, grouping(node_db))
    events = shuffled_history(players=80)
    sent = statements_of(writer, events)
    assert max(len({partition(row) for row in rows}) for rows in sent.rows) > 10, "no batch packs partitions"
    warnings: list[str] = []
    for statement in sent.statements:
        response = node_db.session.execute_async(statement)
        response.result()
        warnings += [text for text in response.warnings or () if "exceeding specified threshold" in text]
    assert warnings == []
    assert await stored(node_db) == expected(events, writer.partition_hours)
