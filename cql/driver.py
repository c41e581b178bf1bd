"""asyncio bridge over cassandra-driver: connect off the loop, await queries, pump many writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, SimpleStatement, Statement, tuple_factory

from cql.driver_internals import next_paging_state, release
from cql.error_kinds import count_error
from daemon.core.config import CassandraConfig

log = logging.getLogger(__name__)

Query: TypeAlias = str | Statement | PreparedStatement
Params: TypeAlias = Sequence[Any] | None
# How many statements `execute_many` keeps in flight: a number, or a function asked as each completes.
InFlight: TypeAlias = int | Callable[[], int]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows and the driver's opaque state for the next page (None at the end)."""

    rows: list[tuple[Any, ...]]
    paging_state: bytes | None


class Database:
    """A connected driver session; every query method is a coroutine that never blocks the loop."""

    __slots__ = ("cluster", "session", "keyspace")

    def __init__(self, cluster: Cluster, session: Session, keyspace: str) -> None:
        self.cluster = cluster
        self.session = session
        self.keyspace = keyspace

    @classmethod
    async def connect(cls, config: CassandraConfig) -> Database:
        """Connect in a worker thread: the driver's connect blocks on network I/O."""
        cluster = build_cluster(config)
        _quiet_expected_server_warnings()
        try:
            with _quiet_connect_failures():
                session = await asyncio.to_thread(cluster.connect)
        except BaseException:
            await asyncio.to_thread(cluster.shutdown)
            raise
        return cls(cluster, session, config.keyspace)

    async def close(self) -> None:
        await asyncio.to_thread(self.cluster.shutdown)

    def hosts(self) -> tuple[int, int]:
        """(hosts the driver knows, hosts it considers up); cheap, read on every metrics scrape."""
        hosts = self.cluster.metadata.all_hosts()
        return len(hosts), sum(1 for host in hosts if host.is_up)

    async def prepare(self, query: str) -> PreparedStatement:
        return await asyncio.to_thread(self.session.prepare, query)

    async def execute(
        self, query: Query, params: Params = None, fetch_size: int | None = 5000
    ) -> list[tuple[Any, ...]]:
        """Run a query and collect every page of its result."""
        rows: list[tuple[Any, ...]] = []
        paging_state: bytes | None = None
        while True:
            page = await self.execute_page(query, params, fetch_size, paging_state)
            rows.extend(page.rows)
            if page.paging_state is None:
                return rows
            paging_state = page.paging_state

    async def execute_page(
        self, query: Query, params: Params = None, fetch_size: int | None = 5000, paging_state: bytes | None = None
    ) -> Page:
        """Run a query and return one page of rows."""
        statement, parameters = _as_statement(query, params)
        if fetch_size is not None:
            statement.fetch_size = fetch_size
        response = self.session.execute_async(statement, parameters, paging_state=paging_state)
        rows = await _await_response(response)
        # Writes and schema changes answer with no rows at all (None).
        return Page(list(rows or ()), next_paging_state(response))

    async def execute_many(self, statements: Sequence[Statement], concurrency: InFlight) -> list[BaseException | None]:
        """Run statements with at most `concurrency` in flight; return each one's error or None.

        The pump runs in the driver's own callbacks, so a flush of thousands of writes costs one
        asyncio future instead of one task per statement.
        """
        if not statements:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[BaseException | None]] = loop.create_future()
        _WritePump(self.session, statements, concurrency, loop, done).start()
        return await done


class _ExpectedServerWarnings(logging.Filter):
    """Drops two node warnings the driver logs once per request, about what this service does on purpose:
    unlogged batches across partitions (each sent to a replica of all of them, cql/grouping.py), and
    tombstones of cleared pending marks, thousands for a few minutes after a backfill (cql/pending.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.args:
            return True
        warning = str(record.args[0])
        return not (
            warning.startswith("Unlogged batch covering") or ("tombstone cells" in warning and ".rollup_marks" in warning)
        )


def _quiet_expected_server_warnings() -> None:
    protocol_log = logging.getLogger("cassandra.protocol")
    if not any(isinstance(existing, _ExpectedServerWarnings) for existing in protocol_log.filters):
        protocol_log.addFilter(_ExpectedServerWarnings())


class _ConnectFailureFilter(logging.Filter):
    """Drops the driver's own tracebacks for a failed first connect: the caller reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not message.startswith(("[control connection]", "Control connection failed"))


@contextlib.contextmanager
def _quiet_connect_failures() -> Iterator[None]:
    driver_log = logging.getLogger("cassandra.cluster")
    quiet = _ConnectFailureFilter()
    driver_log.addFilter(quiet)
    try:
        yield
    finally:
        driver_log.removeFilter(quiet)


def build_cluster(config: CassandraConfig) -> Cluster:
    """A Cluster with token-aware routing in the local DC and the configured consistency."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=config.local_dc)),
        consistency_level=ConsistencyLevel.name_to_value[config.consistency.upper()],
        request_timeout=config.request_timeout,
        row_factory=tuple_factory,
    )
    auth = PlainTextAuthProvider(config.username, config.password) if config.username else None
    return Cluster(
        contact_points=list(config.contact_points),
        port=config.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=config.connect_timeout,
        auth_provider=auth,
    )


def _as_statement(query: Query, params: Params) -> tuple[Statement, Params]:
    """A statement the driver can page, plus the parameters still to send with it."""
    if isinstance(query, PreparedStatement):
        return query.bind(params or ()), None
    if isinstance(query, str):
        return SimpleStatement(query), params
    return query, params


async def _await_response(response: ResponseFuture) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def on_result(rows: Any) -> None:
        _call_soon(loop, _resolve, future, rows, None)

    def on_error(exc: BaseException) -> None:
        count_error(exc)
        _call_soon(loop, _resolve, future, None, exc)

    response.add_callbacks(on_result, on_error)
    try:
        return await future
    finally:
        release(response)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Hand a driver callback's result to the loop; never raise in the driver's thread.

    An exception escaping a timeout callback makes the driver's event thread retry that timer
    forever (and starve every connection), so a loop that has closed meanwhile is ignored: nobody
    is waiting for the answer any more.
    """
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        loop.call_soon_threadsafe(callback, *args)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _WritePump:
    """Keeps up to `concurrency` statements in flight from driver callbacks; resolves once at the end.

    A callable `concurrency` is asked again as each statement completes (from the driver's thread),
    so the depth follows it: when it drops, completions send nothing until fewer are in flight;
    when it rises, the next completion fills up to it. One statement stays in flight at least, so a
    completion always comes to send the rest. A request that fails at once (no host reachable)
    calls back synchronously from inside `add_callbacks`: the sending loop is then already running
    (`_pumping`) and sees the room it made, so re-entry loops instead of recursing.
    """

    def __init__(
        self,
        session: Session,
        statements: Sequence[Statement],
        concurrency: InFlight,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[list[BaseException | None]],
    ) -> None:
        self._session = session
        self._statements = statements
        self._depth = concurrency if callable(concurrency) else lambda: concurrency
        self._loop = loop
        self._done = done
        self._errors: list[BaseException | None] = [None] * len(statements)
        self._in_flight: dict[int, ResponseFuture] = {}
        self._next = 0
        self._finished = 0
        self._pumping = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._pump()

    def _pump(self) -> None:
        with self._lock:
            if self._pumping:
                return
            self._pumping = True
        while True:
            depth = max(1, self._depth())
            with self._lock:
                if self._next >= len(self._statements) or self._next - self._finished >= depth:
                    self._pumping = False
                    return
                index = self._next
                self._next += 1
            try:
                response = self._session.execute_async(self._statements[index])
            except Exception as exc:  # raised synchronously when the session is shut down
                count_error(exc)
                self._finish(index, exc)
                continue
            self._in_flight[index] = response  # before add_callbacks, which may call back at once
            response.add_callbacks(self._on_result, self._on_error, callback_args=(index,), errback_args=(index,))

    def _on_result(self, _rows: Any, index: int) -> None:
        self._finish(index, None)

    def _on_error(self, exc: BaseException, index: int) -> None:
        count_error(exc)
        self._finish(index, exc)

    def _finish(self, index: int, error: BaseException | None) -> None:
        self._errors[index] = error
        response = self._in_flight.pop(index, None)
        if response is not None:
            release(response)
        with self._lock:
            self._finished += 1
            all_done = self._finished == len(self._statements)
        if all_done:
            _call_soon(self._loop, _resolve, self._done, self._errors, None)
        else:
            self._pump()


def first_error(errors: Iterable[BaseException | None]) -> BaseException | None:
    """The first non-None error of an `execute_many` result."""
    return next((error for error in errors if error is not None), None)
