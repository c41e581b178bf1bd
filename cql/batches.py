"""Unlogged batches: one partition's rows, or whole partitions of one replica set, bounded below Cassandra's thresholds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cassandra.query import BoundStatement, Statement

from cql.driver_internals import unlogged_batch

# Cassandra warns above 5 KiB per batch and fails above 50 KiB (batch_size_*_threshold). A
# session row mutation is ~100 bytes, so 40 statements stay under the warning.
MAX_BATCH_STATEMENTS = 40

# What Cassandra counts beyond a row's bound values (clustering, liveness, cell timestamps and TTLs),
# per row and per partition of a batch. Fitted from the node's own size warnings for the writer's
# rows: upper bounds by 10-70% (tests/test_replica_grouping.py sends full batches and checks that
# the node does not warn).
ROW_OVERHEAD_BYTES = 40
PARTITION_OVERHEAD_BYTES = 48


@dataclass(frozen=True, slots=True)
class BatchBounds:
    """How large a batch across partitions may grow: in statements, and in Cassandra's measure of bytes."""

    statements: int = MAX_BATCH_STATEMENTS
    bytes: int = 4608  # 90% of the default 5 KiB batch_size_warn_threshold


def estimated_bytes(statement: BoundStatement) -> int:
    """The size Cassandra will count for this row when it checks a batch against its thresholds."""
    return ROW_OVERHEAD_BYTES + sum(map(len, statement.values))


def batched(group: Sequence[BoundStatement]) -> list[Statement]:
    """One statement as is; several (same partition) as unlogged batches of bounded size."""
    if len(group) == 1:
        return [group[0]]
    return [
        unlogged_batch(group[offset : offset + MAX_BATCH_STATEMENTS])
        for offset in range(0, len(group), MAX_BATCH_STATEMENTS)
    ]


def packed(groups: Iterable[Sequence[BoundStatement]], bounds: BatchBounds) -> list[Statement]:
    """Partitions that share their replicas, several to a batch, each partition's rows whole in one batch.

    A partition's rows stay together, so each is applied as one mutation, as in a batch of its own;
    a partition too large for one batch gets batches of its own (`batched`).
    """
    statements: list[Statement] = []
    batch: list[BoundStatement] = []
    size = 0
    for group in groups:
        group_size = PARTITION_OVERHEAD_BYTES + sum(map(estimated_bytes, group))
        if len(group) > bounds.statements or group_size > bounds.bytes:
            statements += batched(group)
            continue
        if len(batch) + len(group) > bounds.statements or size + group_size > bounds.bytes:
            statements.append(unlogged_batch(batch) if len(batch) > 1 else batch[0])
            batch, size = [], 0
        batch += group
        size += group_size
    if batch:
        statements.append(unlogged_batch(batch) if len(batch) > 1 else batch[0])
    return statements
