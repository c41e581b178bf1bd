"""Renders `schema.cql` for a keyspace and applies it idempotently; checks that it is present."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from importlib import resources

from cql.driver import Database
from cql.layout import LEGACY_HOURS, pin_partition_hours
from cql.pending import LEGACY_TABLE, copy_legacy_marks
from cql.player_index import index_player_starts
from daemon.core.config import CassandraConfig

SCHEMA_VERSION = 6
# The version that added `player_starts`: a keyspace recorded at an older one holds sessions the
# index does not know yet, so `apply` fills it from `sessions_by_player` before recording 4.
PLAYER_INDEX_VERSION = 4
# The version that moved pending marks from `rollup_pending` to `rollup_marks` (partitioned by
# level and time): `apply` copies the old table's marks over before recording 5.
MARKS_VERSION = 5
# The version that made the span of a `country_starts` partition a setting (`storage_layout`): an
# older keyspace holds hour partitions, so `apply` pins it at one hour whatever the config says.
LAYOUT_VERSION = 6
COMPONENT = "player-session-service"
log = logging.getLogger(__name__)
REQUIRED_TABLES = (
    "sessions_by_player",
    "player_starts",
    "country_starts",
    "start_hours_by_country",
    "starts_by_minute",
    "rollup_counts",
    "rollup_marks",
    "compat_cursor",
    "api_keys",
    "storage_layout",
    "schema_version",
)


def replication_clause(config: CassandraConfig) -> str:
    """SimpleStrategy with one factor, or NetworkTopologyStrategy with a factor per datacenter."""
    if config.replication_class == "NetworkTopologyStrategy":
        factors = ", ".join(f"'{dc}': {factor}" for dc, factor in sorted(config.datacenters.items()))
        return f"{{'class': 'NetworkTopologyStrategy', {factors}}}"
    return f"{{'class': 'SimpleStrategy', 'replication_factor': {config.replication_factor}}}"


def render_schema(config: CassandraConfig, keyspace: str | None = None) -> list[str]:
    """The schema's CQL statements with keyspace and replication filled in, comments removed."""
    template = resources.files("cql").joinpath("schema.cql").read_text(encoding="utf-8")
    lines = [line for line in template.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines).format(keyspace=keyspace or config.keyspace, replication=replication_clause(config))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


async def apply_schema(
    db: Database, config: CassandraConfig, keyspace: str | None = None, reindex: bool = False
) -> list[str]:
    """Create whatever is missing (every statement is IF NOT EXISTS), fill new indexes, record the version.

    `reindex` fills the player start index again even when the recorded version says it is
    done: for starts that replicas of an older version stored after the first `apply`.
    """
    keyspace = keyspace or config.keyspace
    before = await recorded_version(db, keyspace)
    statements = render_schema(config, keyspace)
    for statement in statements:
        # Schema changes must agree across nodes before the next one; the driver waits for it.
        await db.execute(statement)
    if reindex or (before is not None and before < PLAYER_INDEX_VERSION):
        await index_player_starts(db, keyspace)
    if before is not None and before < MARKS_VERSION and await _has_table(db, keyspace, LEGACY_TABLE):
        await copy_legacy_marks(db, keyspace)
    older = before is not None and before < LAYOUT_VERSION
    span = await pin_partition_hours(db, keyspace, LEGACY_HOURS if older else config.country_partition_hours)
    if span != config.country_partition_hours:
        log.warning(
            "keyspace %s keeps country_starts partitions of %d hour(s), chosen when it was created; "
            "cassandra.country_partition_hours = %d applies to new keyspaces only",
            keyspace,
            span,
            config.country_partition_hours,
        )
    # Recorded last: an apply interrupted before this point does the whole job again next time.
    await db.execute(
        f"INSERT INTO {keyspace}.schema_version (component, version, applied_at) VALUES (%s, %s, %s)",
        (COMPONENT, SCHEMA_VERSION, dt.datetime.now(dt.UTC)),
    )
    await asyncio.to_thread(db.cluster.refresh_schema_metadata)
    return statements


async def _has_table(db: Database, keyspace: str, table: str) -> bool:
    rows = await db.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s", (keyspace, table)
    )
    return bool(rows)


async def recorded_version(db: Database, keyspace: str) -> int | None:
    """The schema version `apply` last recorded in `keyspace`; None for a keyspace it never finished."""
    if not await _has_table(db, keyspace, "schema_version"):
        return None
    rows = await db.execute(f"SELECT version FROM {keyspace}.schema_version WHERE component = %s", (COMPONENT,))
    return rows[0][0] if rows else None


async def check_schema(db: Database) -> str | None:
    """None when Cassandra answers and every table exists; otherwise the reason, for /readyz."""
    try:
        rows = await db.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (db.keyspace,))
    except Exception as exc:
        return f"cassandra unreachable: {type(exc).__name__}: {exc}"
    present = {name for (name,) in rows}
    missing = [table for table in REQUIRED_TABLES if table not in present]
    if missing:
        return f"schema missing in keyspace {db.keyspace}: {', '.join(missing)} (run `python -m daemon schema apply`)"
    return None
