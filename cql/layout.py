"""How many hours one `country_starts` partition spans in a keyspace: chosen at its first schema apply, then fixed."""

from __future__ import annotations

from cql.driver import Database
from daemon.core.timebuckets import PARTITION_SPANS

SETTING = "country_partition_hours"
# Keyspaces created before the span was a setting hold one partition per (country, hour).
LEGACY_HOURS = 1

_PIN = "INSERT INTO {ks}.storage_layout (name, value) VALUES (%s, %s) IF NOT EXISTS"
_READ = "SELECT value FROM {ks}.storage_layout WHERE name = %s"


async def pin_partition_hours(db: Database, keyspace: str, hours: int) -> int:
    """Record `hours` for `keyspace` unless it already has a span (compare-and-set); the span it keeps.

    Rows already stored sit in partitions of the recorded span, so a different span would hide
    them from the listing: the first apply decides, and every daemon reads the recorded value.
    """
    if hours not in PARTITION_SPANS:
        raise ValueError(f"country_partition_hours must be one of {PARTITION_SPANS}, got {hours}")
    row = (await db.execute(_PIN.format(ks=keyspace), (SETTING, hours)))[0]
    return hours if row[0] else int(row[-1])  # a refused insert returns the row that exists


async def partition_hours(db: Database) -> int:
    """The span recorded in the session's keyspace; LEGACY_HOURS for one never applied with it."""
    rows = await db.execute(_READ.format(ks=db.keyspace), (SETTING,))
    return int(rows[0][0]) if rows else LEGACY_HOURS
