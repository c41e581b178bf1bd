"""API tokens: `pss_<scope>_<id>_<secret>`, minted once, stored as the SHA-256 of the secret."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "pss"
KEY_ID_BYTES = 8  # 16 hex characters: an id to look the key up by and to show in logs and `keys list`
SECRET_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class Scope(enum.Enum):
    """What a key may do; the value is the name stored and typed, `tag` the token's second field."""

    INGEST = "ingest"
    READ = "read"

    @property
    def tag(self) -> str:
        return "ing" if self is Scope.INGEST else "read"


_SCOPE_OF_TAG = {scope.tag: scope for scope in Scope}


@dataclass(frozen=True, slots=True)
class Token:
    """A token split into its parts; the secret is never stored or logged."""

    scope: Scope
    key_id: str
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}_{self.scope.tag}_{self.key_id}_{self.secret}"

    @classmethod
    def mint(cls, scope: Scope) -> Token:
        return cls(scope, secrets.token_hex(KEY_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES))

    @classmethod
    def parse(cls, text: str) -> Token | None:
        """The token's parts, or None when `text` is not shaped like a token (the secret may contain `_`)."""
        parts = text.split("_", 3)
        if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not parts[3]:
            return None
        scope = _SCOPE_OF_TAG.get(parts[1])
        if scope is None or not _KEY_ID.fullmatch(parts[2]):
            return None
        return cls(scope, parts[2], parts[3])

    @property
    def digest(self) -> bytes:
        return secret_digest(self.secret)


def secret_digest(secret: str) -> bytes:
    """What is stored for a secret: its SHA-256 (the secret has 256 random bits, so no salt or slow hash is needed)."""
    return hashlib.sha256(secret.encode()).digest()
