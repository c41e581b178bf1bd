"""Unlogged batches of one partition's rows, bounded below Cassandra's batch size thresholds."""

from __future__ import annotations

from collections.abc import Sequence

from cassandra.query import BatchStatement, BatchType, BoundStatement, Statement

# Cassandra warns above 5 KiB per batch and fails above 50 KiB (batch_size_*_threshold). A
# session row mutation is ~100 bytes, so 40 statements stay under the warning.
MAX_BATCH_STATEMENTS = 40


def batched(group: Sequence[BoundStatement]) -> list[Statement]:
    """One statement as is; several (same partition) as unlogged batches of bounded size."""
    if len(group) == 1:
        return [group[0]]
    batches: list[Statement] = []
    for offset in range(0, len(group), MAX_BATCH_STATEMENTS):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for statement in group[offset : offset + MAX_BATCH_STATEMENTS]:
            batch.add(statement)
        batch.is_idempotent = True
        batches.append(batch)
    return batches
