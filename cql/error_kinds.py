"""A failed Cassandra request's kind for the metrics: timeout, unavailable, overloaded or other."""

from __future__ import annotations

from cassandra import OperationTimedOut, Timeout, Unavailable
from cassandra.protocol import OverloadedErrorMessage

from daemon.core.metrics import count_cassandra_error


def error_kind(error: BaseException) -> str:
    """Server-side timeouts (read or write) and the driver's own are both `timeout`; `unavailable` is too few
    replicas alive for the consistency level; `overloaded` is a coordinator shedding load. Anything else (no
    host reachable at all, a failure on a replica, a bad query) is `other`: the hosts-up gauge tells the first."""
    if isinstance(error, (Timeout, OperationTimedOut)):
        return "timeout"
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, OverloadedErrorMessage):
        return "overloaded"
    return "other"


def count_error(error: BaseException) -> None:
    """Count one failed request by its kind; called from the driver's threads."""
    count_cassandra_error(error_kind(error))
