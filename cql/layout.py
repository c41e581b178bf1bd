"""How many hours one `country_starts` partition spans in a keyspace: chosen at its first schema apply, then fixed."""

from __future__ import annotations

from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from cql.driver import Database
from daemon.core.timebuckets import PARTITION_SPANS

SETTING = "country_partition_hours"
# Keyspaces created before the span was a setting hold one partition per (country, hour).
LEGACY_HOURS = 1

_PIN = "INSERT INTO {ks}.storage_layout (name, value) VALUES (%s, %s) IF NOT EXISTS"
_READ = "SELECT value FROM {ks}.storage_layout WHERE name = %s"


class LayoutMissing(RuntimeError):
    """The keyspace records no span: its `schema apply` never got that far."""


async def pin_partition_hours(db: Database, keyspace: str, hours: int) -> int:
    """Record `hours` for `keyspace` unless it already has a span (compare-and-set); the span it keeps.

    Rows already stored sit in partitions of the recorded span, so a different span would hide
    them from the listing: the first apply decides, and every daemon reads the recorded value.
    """
    if hours not in PARTITION_SPANS:
        raise ValueError(f"country_partition_hours must be one of {PARTITION_SPANS}, got {hours}")
    (applied, *_) = (await db.execute(_PIN.format(ks=keyspace), (SETTING, hours)))[0]
    if applied:
        return hours
    kept = await _recorded(db, keyspace)
    if kept is None:  # a pin is never deleted, so a refused insert has one to show
        raise LayoutMissing(f"keyspace {keyspace}: the {SETTING} pin was refused but cannot be read")
    return kept


async def partition_hours(db: Database) -> int:
    """The span recorded in the session's keyspace; LayoutMissing if none is (an unfinished apply)."""
    hours = await _recorded(db, db.keyspace)
    if hours is None:
        raise LayoutMissing(
            f"keyspace {db.keyspace} records no {SETTING}: its schema apply did not finish "
            "(run `python -m daemon schema apply`)"
        )
    return hours


async def _recorded(db: Database, keyspace: str) -> int | None:
    # SERIAL: the pin is written with a lightweight transaction, and a plain read at ONE or in
    # another datacenter could miss one just committed and settle on the wrong span for good.
    query = SimpleStatement(_READ.format(ks=keyspace), consistency_level=ConsistencyLevel.SERIAL)
    rows = await db.execute(query, (SETTING,))
    return int(rows[0][0]) if rows else None
