"""Token buckets per API key (per replica): ingest events per second and read requests per second."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, holding at most `capacity`.

    A request larger than the bucket (a 100,000-event batch against a 50,000-event burst) is let through when
    the bucket is full and leaves it in debt, so the average rate holds without refusing big batches forever.
    """

    __slots__ = ("rate", "capacity", "_tokens", "_updated", "_now")

    def __init__(self, rate: float, capacity: float, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self._now = now
        self._tokens = capacity
        self._updated = now()

    def take(self, amount: float) -> float:
        """0.0 when `amount` was taken; otherwise the seconds until it could be (nothing is taken then)."""
        tokens = self._refill()
        needed = min(amount, self.capacity)
        if tokens >= needed:
            self._tokens = tokens - amount
            return 0.0
        return (needed - tokens) / self.rate

    def wait_for_any(self) -> float:
        """0.0 when the bucket is not empty (a request of unknown size may start), else the seconds until it is not."""
        tokens = self._refill()
        return 0.0 if tokens > 0 else (1 - tokens) / self.rate

    def _refill(self) -> float:
        now = self._now()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return self._tokens


class RateLimits:
    """One bucket per key for one kind of work; a rate of 0 means unlimited."""

    __slots__ = ("_rate", "_capacity", "_buckets", "_now")

    def __init__(self, rate: float, capacity: float, now: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = capacity
        self._buckets: dict[str, TokenBucket] = {}
        self._now = now

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def bucket(self, key_id: str) -> TokenBucket | None:
        if not self.enabled:
            return None
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = TokenBucket(self._rate, self._capacity, self._now)
        return bucket
