"""Which replica set a partition belongs to, from the driver's token map (for grouping writes by replicas)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable

from cassandra.cluster import Cluster
from cassandra.metadata import Murmur3Token, TokenMap

REFRESH_SECONDS = 10.0  # a keyspace's replication may change in place; the ring is re-read this often


class ReplicaSets:
    """A snapshot of one keyspace's ring: each token range's replica set as a small integer.

    Ranges owned by the same hosts share a number, so partitions with equal numbers have exactly
    the same replicas. Only the Murmur3 partitioner is read (the default since Cassandra 1.2).
    """

    __slots__ = ("_ends", "_hash", "_ids", "count")

    def __init__(self, ends: list[int], ids: list[int], hash_key: Callable[[bytes], int]) -> None:
        self._ends = ends  # the last token of each range, ascending (the driver's ring)
        self._ids = ids  # the replica-set number of each range
        self._hash = hash_key
        self.count = len(set(ids))

    @classmethod
    def of(cls, token_map: TokenMap | None, keyspace: str) -> ReplicaSets | None:
        """The keyspace's replica sets, or None when the driver has no usable token map for it."""
        if token_map is None or token_map.token_class is not Murmur3Token or not token_map.ring:
            return None
        numbers: dict[frozenset[object], int] = {}
        ends: list[int] = []
        ids: list[int] = []
        for token in token_map.ring:
            replicas = frozenset(token_map.get_replicas(keyspace, token))
            if not replicas:  # keyspace unknown to the driver (yet)
                return None
            ends.append(token.value)
            ids.append(numbers.setdefault(replicas, len(numbers)))
        return cls(ends, ids, Murmur3Token.hash_fn)

    def set_of(self, routing_key: bytes) -> int:
        """The number of the replica set owning the partition with this routing key."""
        if self.count == 1:
            return self._ids[0]
        # A range ends at its token, inclusive; past the last token, the ring wraps to the first range.
        index = bisect_left(self._ends, self._hash(routing_key))
        return self._ids[index if index < len(self._ends) else 0]


class ReplicaTracker:
    """The current `ReplicaSets` of a keyspace: re-read when the token map changes, and every few seconds."""

    __slots__ = ("_cluster", "_keyspace", "_read_at", "_sets", "_token_map")

    def __init__(self, cluster: Cluster, keyspace: str) -> None:
        self._cluster = cluster
        self._keyspace = keyspace
        self._token_map: TokenMap | None = None
        self._sets: ReplicaSets | None = None
        self._read_at = -REFRESH_SECONDS

    def current(self) -> ReplicaSets | None:
        token_map = self._cluster.metadata.token_map
        now = time.monotonic()
        if token_map is not self._token_map or now - self._read_at >= REFRESH_SECONDS:
            self._token_map, self._read_at = token_map, now
            self._sets = ReplicaSets.of(token_map, self._keyspace)
        return self._sets
