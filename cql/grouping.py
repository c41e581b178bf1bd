"""How a flush's partitions become requests: packed by replica set (the bulk loader's REPLICA_SET mode) or one
partition per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

from cassandra.query import BoundStatement, Statement

from cql.batches import BatchBounds, batched, packed
from cql.driver import Database
from cql.replicas import ReplicaTracker
from daemon.core.config import IngestConfig

# [ingest] batching: how rows of different partitions may share a request.
REPLICA_SET = "replica_set"  # every partition, packed with others of the same replica set
PLAYERS_APART = "players_apart"  # the same, but each player's rows in batches of their own
PARTITION = "partition"  # one partition per batch (the design before replica-set grouping)
MODES = (REPLICA_SET, PLAYERS_APART, PARTITION)


class Grouping:
    """Turns partition groups into statements; never puts partitions of different replica sets in one batch.

    Falls back to one partition per batch when the driver has no token map for the keyspace, or
    when the ring has more than `max_replica_sets` replica sets (a large cluster with vnodes: the
    groups would be too small to be worth packing).
    """

    __slots__ = ("_replicas", "bounds", "max_replica_sets", "mode")

    def __init__(self, mode: str, bounds: BatchBounds, max_replica_sets: int, replicas: ReplicaTracker | None) -> None:
        if mode not in MODES:
            raise ValueError(f"batching must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.bounds = bounds
        self.max_replica_sets = max_replica_sets
        self._replicas = replicas

    @classmethod
    def of(cls, db: Database, ingest: IngestConfig) -> Grouping:
        """The grouping [ingest] asks for, over the ring of `db`'s keyspace."""
        bounds = BatchBounds(ingest.batch_statements, ingest.batch_bytes)
        return cls(ingest.batching, bounds, ingest.max_replica_sets, ReplicaTracker(db.cluster, db.keyspace))

    @classmethod
    def per_partition(cls) -> Grouping:
        return cls(PARTITION, BatchBounds(), 1, None)

    def replica_set_count(self) -> int | None:
        """Replica sets in the ring now, or None when grouping by them is off or impossible."""
        if self.mode == PARTITION or self._replicas is None:
            return None
        sets = self._replicas.current()
        return None if sets is None else sets.count

    def statements(self, groups: Mapping[Hashable, Sequence[BoundStatement]]) -> list[Statement]:
        """The requests for `groups` (partition key -> its rows); a player's key is its id, a str."""
        sets = None
        if self.mode != PARTITION and self._replicas is not None:
            sets = self._replicas.current()
        if sets is None or sets.count > self.max_replica_sets:
            return [statement for group in groups.values() for statement in batched(group)]
        statements: list[Statement] = []
        by_set: defaultdict[int, list[Sequence[BoundStatement]]] = defaultdict(list)
        players_apart = self.mode == PLAYERS_APART
        single = sets.count == 1  # then no partition key needs hashing
        for key, group in groups.items():
            if players_apart and isinstance(key, str):
                statements += batched(group)
            else:
                by_set[0 if single else sets.set_of(group[0].routing_key)].append(group)
        for members in by_set.values():
            statements += packed(members, self.bounds)
        return statements
