"""Every use of cassandra-driver's private internals, in one place; tests/test_driver_internals.py fails
loudly, naming what changed and what to do, when a driver upgrade moves one of them.

Each use carries a measured win (BENCHMARKS.md): binding without `PreparedStatement.bind`, filling a batch
without `BatchStatement.add`, freeing finished requests by reference counting, and paging one page at a time
without a ResultSet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cassandra.cluster import ResponseFuture
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement

DRIVER_VERSION_CHECKED = "3.30.1"  # the version these internals were read from (pyproject pins it)

Bind = Callable[[list[bytes]], BoundStatement]


def bound_statement_maker(prepared: PreparedStatement) -> Bind:
    """A function making BoundStatements of `prepared` from values already encoded to CQL bytes.

    `PreparedStatement.bind` looks up each column's type and encodes each value (~7 µs for five
    values); copying the attributes of one fresh BoundStatement and setting `values` costs ~1.4 µs.
    Relies on BoundStatement keeping its state in `__dict__` and on `values` holding encoded bytes.
    """
    template = dict(BoundStatement(prepared).__dict__)  # everything but the values, copied per statement

    def bind(values: list[bytes]) -> BoundStatement:
        statement: BoundStatement = BoundStatement.__new__(BoundStatement)
        statement.__dict__.update(template)
        statement.values = values
        return statement

    return bind


def unlogged_batch(rows: Sequence[BoundStatement]) -> BatchStatement:
    """An idempotent unlogged batch of bound statements, routed (token-aware) by its first row's partition.

    `BatchStatement.add` type-checks each row and updates the batch's routing state per row; the batch
    keeps a bound row as (True, query id, encoded values), so the list is built here at once and the
    routing key and keyspace set from the first row, as `add` would. Relies on `_statements_and_parameters`.
    """
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    batch._statements_and_parameters = [(True, row.prepared_statement.query_id, row.values) for row in rows]
    first = rows[0]
    batch.routing_key = first.routing_key
    batch.keyspace = first.keyspace
    batch.is_idempotent = True
    return batch


def next_paging_state(response: ResponseFuture) -> bytes | None:
    """The opaque state that fetches the page after the one `response` answered (None at the end).

    Read from the ResponseFuture itself, so a page is read without building a ResultSet (whose
    public `paging_state` holds the same bytes).
    """
    return response._paging_state if response.has_more_pages else None


def release(response: ResponseFuture) -> None:
    """Break the reference cycle a finished request leaves behind, so it is freed at once.

    The driver cancels a request's timeout timer when the answer arrives but keeps the timer, and
    the timer holds a bound method of the request: request, statement and rows then live until
    Python's cyclic collector finds them. Under a listing load that was ~2,900 objects per page
    and gen-0 collections of ~27 ms (gen-1 100-180 ms) in the daemon, the main source of the
    read tails. Dropping the cancelled timer leaves plain reference counting to free it all.
    A timer still armed (the awaiting task was cancelled mid-request) is left alone: the driver
    needs it to cancel it when the answer comes, or it would fire on a finished request.
    """
    timer = response._timer
    if timer is not None and timer.canceled:
        response._timer = None
