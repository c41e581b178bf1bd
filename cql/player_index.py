"""Fills `player_starts` from `sessions_by_player` for keyspaces that stored sessions before the index existed."""

from __future__ import annotations

from cql.driver import Database, first_error

_SCAN = "SELECT player_id, session_id, start_ts, TTL(start_ts) FROM {ks}.sessions_by_player"
_INSERT = "INSERT INTO {ks}.player_starts (player_id, start_ts, session_id) VALUES (?, ?, ?) USING TTL ?"
SCAN_PAGE = 5_000
CONCURRENCY = 64


async def index_player_starts(db: Database, keyspace: str) -> int:
    """Write an index row for every stored start, with the start's remaining TTL; returns how many.

    Idempotent (the rows are keyed by the start), so running it again after a failure, or after
    replicas of an older version stored more starts, only rewrites the same rows.
    """
    insert = await db.prepare(_INSERT.format(ks=keyspace))
    insert.is_idempotent = True
    written = 0
    paging_state: bytes | None = None
    while True:
        page = await db.execute_page(_SCAN.format(ks=keyspace), fetch_size=SCAN_PAGE, paging_state=paging_state)
        statements = [
            # A start stored without a TTL keeps none here either (TTL 0 = never expires).
            insert.bind((player_id, start_ts, session_id, ttl or 0))
            for player_id, session_id, start_ts, ttl in page.rows
            if start_ts is not None
        ]
        error = first_error(await db.execute_many(statements, CONCURRENCY))
        if error is not None:
            raise error
        written += len(statements)
        if page.paging_state is None:
            return written
        paging_state = page.paging_state
