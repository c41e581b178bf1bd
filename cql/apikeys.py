"""The `api_keys` table: create, revoke and list keys (the secret only as its SHA-256)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cql.driver import Database

_COLUMNS = "key_id, scope, name, secret_sha256, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    scope: str
    name: str
    secret_sha256: bytes
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ApiKeyStore:
    """Reads and writes of `api_keys`; the table is small (a few keys per scope), so it is read whole."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, key_id: str, scope: str, name: str, secret_sha256: bytes) -> StoredKey:
        created_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        rows = await self._db.execute(
            f"INSERT INTO {self._db.keyspace}.api_keys ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, null) IF NOT EXISTS",
            (key_id, scope, name, secret_sha256, created_at),
        )
        if not rows[0][0]:  # 64 random bits collided: never overwrite another key
            raise ValueError(f"key id {key_id} exists already")
        return StoredKey(key_id, scope, name, secret_sha256, created_at, None)

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked (its row stays: a keyed deployment stays keyed); False when there is no such key."""
        rows = await self._db.execute(
            f"UPDATE {self._db.keyspace}.api_keys SET revoked_at = %s WHERE key_id = %s IF EXISTS",
            (dt.datetime.now(dt.UTC), key_id),
        )
        return bool(rows and rows[0][0])  # the lightweight transaction's [applied]

    async def all(self) -> list[StoredKey]:
        rows = await self._db.execute(f"SELECT {_COLUMNS} FROM {self._db.keyspace}.api_keys")
        return [StoredKey(*row) for row in rows]
