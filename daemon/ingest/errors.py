"""Why a request's events were not stored: each becomes a 503 with Retry-After at the HTTP edge."""


class StorageUnavailable(Exception):
    """Cassandra did not acknowledge the writes within the retry budget; the request gets 503."""


class ShuttingDown(Exception):
    """The pipeline no longer takes events; the request gets 503."""
