"""What the live bus takes from redis-py, in one place: how a client is made, which errors mean "unreachable"."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

SOCKET_TIMEOUT = 5.0  # seconds a command may take (more than the reader's XREAD BLOCK) before Redis is unreachable
CONNECT_TIMEOUT = 2.0

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""No answer: connection refused, reset or timed out. The bus is down."""
FAILED = (*UNREACHABLE, RedisError)
"""Unreachable, or an answer that is an error (e.g. WRONGTYPE: the key is not a stream)."""

Redis = aioredis.Redis


def client(url: str, name: str) -> Redis:
    """A pooled client that never retries by itself (redis-py 6+ retries 10 times by default): a failure shows
    at once, so the feed falls back while the reader reconnects with its own backoff. RESP2 fixes the shapes of
    the replies we read: XREAD `[[stream, [(id, {field: value})]]]` or None, XRANGE `[(id, {field: value})]`."""
    return aioredis.Redis.from_url(
        url, protocol=2, retry=Retry(NoBackoff(), 0), socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT, client_name=name,
    )


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username or ''}:***@{parts.hostname}:{parts.port or 6379}").geturl()
