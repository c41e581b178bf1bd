"""Every replica's copy of the API keys, re-read from Cassandra every few seconds, and the check of a token."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from cql.apikeys import ApiKeyStore, StoredKey
from daemon.auth.tokens import Scope, Token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grant:
    """The request may go on; `key_id` is None when the deployment has no keys (anonymous)."""

    key_id: str | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """401 (no usable key) or 403 (a valid key of another scope), with the reason for the JSON error."""

    status: int
    reason: str


class KeyRing:
    """The keys as last read. Enforced as soon as any key exists, revoked or not: revoking every key must not
    open the service to anyone."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[StoredKey] = ()) -> None:
        self._keys = {key.key_id: key for key in keys}

    @property
    def enforced(self) -> bool:
        return bool(self._keys)

    def replace(self, keys: Iterable[StoredKey]) -> None:
        self._keys = {key.key_id: key for key in keys}

    def check(self, presented: str | None, scope: Scope) -> Grant | Refusal:
        if not self._keys:
            return Grant(None)
        if not presented:
            return Refusal(401, f"an API key with scope {scope.value} is required (Authorization: Bearer <token>)")
        token = Token.parse(presented)
        stored = self._keys.get(token.key_id) if token else None
        # compare_digest: the time taken must not tell how much of a guessed secret was right.
        if token is None or stored is None or not hmac.compare_digest(stored.secret_sha256, token.digest):
            return Refusal(401, "the API key is not valid")
        if stored.revoked:
            return Refusal(401, f"the API key {stored.key_id} was revoked")
        if stored.scope != scope.value:
            return Refusal(403, f"the API key {stored.key_id} has scope {stored.scope}; this route needs {scope.value}")
        return Grant(stored.key_id)


class KeyRefresher:
    """Re-reads `api_keys` every `interval` seconds, so a key created or revoked on any replica takes effect here
    within one interval. A failed read keeps the keys last read (Cassandra being away must not open or close
    the service)."""

    def __init__(self, store: ApiKeyStore, ring: KeyRing, interval: float) -> None:
        self._store = store
        self._ring = ring
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        self._ring.replace(await self._store.all())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-key-refresher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.load()
            except Exception as exc:  # the driver's errors: unavailable, timeouts, no host
                log.warning(
                    "api keys: cannot re-read them (%s: %s); keeping the last %s",
                    type(exc).__name__,
                    exc,
                    "keys" if self._ring.enforced else "state (no keys)",
                )
