"""Query answers before ingest writes: ingest keeps fewer writes in flight while clients wait for reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# How long the reduced depth outlasts the last answer: a client asking again within it (a dashboard
# polling every second, the next page of a listing) finds the node's queue already short.
HOLD_SECONDS = 1.0


class ReadPriority:
    """Counts the query answers in progress, so the ingest actors can lower their write depth meanwhile.

    A flush sends up to `ingest.max_inflight_writes` batches at once, and on a small node Cassandra
    queues a read behind all of them: queries answered during a steady ingest waited 60-450 ms at
    p99. With `ingest.inflight_writes_while_answering` set, the depth drops only while someone waits
    for an answer, so a load with nobody reading keeps it whole. Off by default: on two cores it
    trades p50, queries/s and ingest speed for the shorter tail (BENCHMARKS.md). `depth` is read by
    the driver's thread: plain attribute reads, no lock.
    """

    __slots__ = ("_answering", "_clock", "_quiet_at", "answered")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answering = 0
        self.answered = 0  # answers counted so far
        self._quiet_at = 0.0  # monotonic time the last answer finished, plus HOLD_SECONDS

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around a query handler: its reads go before ingest's writes."""
        self._answering += 1
        try:
            yield
        finally:
            self._answering -= 1
            self.answered += 1
            self._quiet_at = self._clock() + HOLD_SECONDS

    @property
    def busy(self) -> bool:
        return self._answering > 0 or self._clock() < self._quiet_at

    def depth(self, full: int, while_answering: int) -> Callable[[], int]:
        """A write depth for `Database.execute_many`: `while_answering` while queries run, else `full`."""
        return lambda: while_answering if self.busy else full
