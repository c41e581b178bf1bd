"""One replica's access state: the key ring and the per-key rate limits, built from `[auth]`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daemon.auth.keyring import KeyRing
from daemon.auth.ratelimit import RateLimits
from daemon.core.config import AuthConfig


@dataclass(slots=True)
class Access:
    ingest: RateLimits
    reads: RateLimits
    ring: KeyRing = field(default_factory=KeyRing)

    @classmethod
    def of(cls, config: AuthConfig) -> Access:
        return cls(
            ingest=RateLimits(config.ingest_events_per_second, config.ingest_burst_events),
            reads=RateLimits(config.read_requests_per_second, config.read_burst_requests),
        )


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
