"""`python -m bench ingest`: the service's HTTP ingest against the limit, a direct-driver baseline and the original design."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import Statement

from bench.common import (
    DATA_TABLES,
    DEMO_NOW,
    RESULTS_DIR,
    BenchError,
    CpuMeter,
    DaemonSpec,
    Machine,
    RssSampler,
    cassandra_pid,
    check_keyspace,
    client_session,
    command_line,
    connected,
    describe_machine,
    ensure_schema,
    fmt_ms,
    fmt_number,
    fmt_ratio,
    int_list,
    keyspace_config,
    keyspace_lock,
    log_path,
    machine_markdown,
    markdown_table,
    median,
    percentile,
    publish,
    ratio,
    running_daemon,
    say,
    status_kb,
    truncate,
)
from cql.batches import BatchBounds, packed
from cql.driver import Database, first_error
from cql.writes import EventWriter
from daemon.core.clock import Clock
from daemon.core.config import Config
from daemon.core.events import Event
from daemon.core.intake import NDJSON, Rules, read_body
from daemon.tools.gen.model import GenOptions, generate

NDJSON_HEADERS = {"Content-Type": NDJSON}
MAX_POST_ATTEMPTS = 100  # 503s are retried after Retry-After...
RETRY_BUDGET = 120.0  # ...for at most this many seconds per batch; then the batch counts as failed
LONG_QUEUE_WAIT = 300.0  # the memory check's second daemon lets requests wait this long for inbox space
POST_TIMEOUT = 600.0  # seconds per request: a 100k-event batch on a busy 2-core box takes a while
# The original Flask service's tables (keyed by (player_id, ts): same-second events overwrote each other).
ORIGINAL_TABLES = ("start_events", "end_events")
_ORIGINAL_DDL = (
    (
        "CREATE TABLE IF NOT EXISTS {ks}.start_events"
        " (player_id text, ts timestamp, country text, session_id text, PRIMARY KEY (player_id, ts))"
    ),
    "CREATE TABLE IF NOT EXISTS {ks}.end_events (player_id text, ts timestamp, session_id text, PRIMARY KEY (player_id, ts))",
)


@dataclass(frozen=True, slots=True)
class IngestOptions:
    events: int = 100_000
    runs: int = 3
    batch_sizes: tuple[int, ...] = (100, 10_000, 100_000)
    clients: tuple[int, ...] = (1, 4, 8)
    seed: int = 2016
    keyspace: str = "bench_ingest"
    port: int = 18081
    direct_concurrency: int = 100
    limit_batch: int = 40  # rows per unlogged batch of the limit baseline (also bounded by ingest.batch_bytes)
    limit_concurrency: int = 256
    original_events: int = 10_000
    memory_clients: int = 4
    memory_batch: int = 100_000  # 0 skips the memory configuration
    results_dir: Path = RESULTS_DIR


QUICK = {
    "events": 2_000,
    "runs": 1,
    "batch_sizes": (100, 1_000),
    "clients": (1, 2),
    "original_events": 200,
    "memory_batch": 0,
}


@dataclass(slots=True)
class Run:
    """One timed pass over the events."""

    events: int  # acknowledged
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    retries: int = 0
    batches: int = 0
    failed_batches: int = 0  # still 503 when the retry budget ran out
    cpu: dict[str, float] = field(default_factory=dict)  # "writer" (daemon or bench process), "cassandra", "client"
    peak_rss_kb: int | None = None  # the daemon's VmHWM (its whole life: one run)
    sampled_rss_kb: int | None = None  # the highest VmRSS seen sampling every 50 ms
    truncate_seconds: float = 0.0
    startup_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Events/s; NaN for a run that did not store everything (its pace would flatter it)."""
        return self.events / self.seconds if self.seconds > 0 and not self.failed_batches else math.nan


@dataclass(slots=True)
class Row:
    """One configuration and its runs."""

    writer: str
    batch: int | None
    clients: int | None
    runs: list[Run] = field(default_factory=list)
    comparable: bool = True  # ran the bench's events (the memory check runs its own, more of them)

    @property
    def rate(self) -> float:
        return median([run.rate for run in self.runs if not math.isnan(run.rate)])

    @property
    def failures(self) -> str:
        """'' when every batch was acknowledged, else e.g. '3/4 batches 503' summed over the runs."""
        failed = sum(run.failed_batches for run in self.runs)
        return f"{failed}/{sum(run.batches for run in self.runs)} batches still 503" if failed else ""

    @property
    def latencies_ms(self) -> list[float]:
        return [ms for run in self.runs for ms in run.latencies_ms]

    def cpu(self, name: str) -> float:
        return median([run.cpu[name] for run in self.runs if name in run.cpu])

    @property
    def peak_rss_mb(self) -> float:
        peaks = [run.peak_rss_kb for run in self.runs if run.peak_rss_kb is not None]
        return max(peaks) / 1024 if peaks else math.nan

    @property
    def events(self) -> int:
        return self.runs[0].events if self.runs else 0


@dataclass(slots=True)
class Context:
    """What every part of one bench session shares."""

    options: IngestOptions
    config: Config
    db: Database
    cassandra_pid: int | None


# -- the events -----------------------------------------------------------------------------


def make_lines(events: int, seed: int) -> list[bytes]:
    return [line.encode() for line in generate(GenOptions(events=events, seed=seed))]


def bodies_of(lines: Sequence[bytes], batch: int) -> list[bytes]:
    """JSON Lines request bodies of `batch` events each (the last one shorter)."""
    return [b"\n".join(lines[offset : offset + batch]) for offset in range(0, len(lines), batch)]


def parse_events(lines: Sequence[bytes], config: Config) -> list[Event]:
    """The events the service would accept, parsed once (outside any timing) for the driver baseline."""
    rules = Rules.of(config.ingest, now_ms(), max_events=len(lines) + 1)
    intake = read_body(b"\n".join(lines), NDJSON, rules)
    if intake.rejected or intake.discarded:
        raise BenchError(f"the generated events were not all accepted: {intake.summary()}")
    return intake.accepted


def now_ms() -> int:
    """The daemon's frozen clock, for the TTLs of the direct baseline's rows."""
    return Clock.from_setting(DEMO_NOW).now_ms()


# -- the service ----------------------------------------------------------------------------


@dataclass(slots=True)
class Posted:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    accepted: int = 0
    retries: int = 0
    failed: int = 0


async def post_batches(session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes], clients: int) -> Posted:
    """`clients` concurrent senders share the bodies; timed from the first send to the last acknowledgement."""
    posted = Posted()
    pending = iter(bodies)

    async def sender() -> None:
        for body in pending:  # a shared iterator: each body is sent once
            began = time.perf_counter()
            accepted, retries = await post_one(session, url, body)
            posted.retries += retries
            if accepted is None:
                posted.failed += 1
                continue
            posted.latencies_ms.append((time.perf_counter() - began) * 1000)
            posted.accepted += accepted

    began = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(sender())
    except* BenchError as errors:
        raise errors.exceptions[0] from None
    posted.seconds = time.perf_counter() - began
    return posted


async def post_one(
    session: aiohttp.ClientSession, url: str, body: bytes, budget: float = RETRY_BUDGET
) -> tuple[int | None, int]:
    """POST until acknowledged (200 = every event durable); returns (accepted, retries).

    `accepted` is None when the daemon still answered 503 after `budget` seconds of retries.
    """
    give_up = time.monotonic() + budget
    for attempt in range(MAX_POST_ATTEMPTS):
        # A BytesIO body: aiohttp warns about large raw bytes bodies.
        async with session.post(url, data=io.BytesIO(body), headers=NDJSON_HEADERS) as response:
            payload = await response.read()
            if response.status == 200:
                return int(orjson.loads(payload)["accepted"]), attempt
            if response.status != 503:
                raise BenchError(f"POST {url}: HTTP {response.status}: {payload[:300]!r}")
            retry_after = float(response.headers.get("Retry-After", "1"))
        if time.monotonic() + retry_after > give_up:
            return None, attempt
        await asyncio.sleep(retry_after)
    return None, MAX_POST_ATTEMPTS


async def service_run(
    ctx: Context, bodies: Sequence[bytes], events: int, clients: int, label: str, env: Mapping[str, str] | None = None
) -> Run:
    """A fresh daemon on emptied tables; events/s, POST latencies, its CPU and peak RSS."""
    options = ctx.options
    truncated = await truncate(ctx.db, options.keyspace, DATA_TABLES)
    spec = DaemonSpec(options.keyspace, options.port, log_path(options.results_dir, f"ingest-{label}"), env or {})
    async with running_daemon(spec) as daemon, client_session(clients, POST_TIMEOUT) as session:
        meter = CpuMeter({"writer": daemon.pid, "cassandra": ctx.cassandra_pid, "client": os.getpid()})
        meter.start()
        try:
            async with RssSampler(daemon.pid) as sampler:
                posted = await post_batches(session, f"{spec.url}/v1/events", bodies, clients)
        except aiohttp.ClientError as exc:
            daemon.check_alive()
            raise BenchError(f"{label}: POST failed: {exc}") from None
        daemon.check_alive()
        cpu = meter.stop()
        peak = status_kb(daemon.pid, "VmHWM")
    if not posted.failed and posted.accepted != events:
        raise BenchError(f"{label}: {posted.accepted:,} of {events:,} events acknowledged")
    return Run(
        events=posted.accepted,
        seconds=posted.seconds,
        latencies_ms=posted.latencies_ms,
        retries=posted.retries,
        batches=len(bodies),
        failed_batches=posted.failed,
        cpu=cpu,
        peak_rss_kb=peak,
        sampled_rss_kb=sampler.peak_kb,
        truncate_seconds=truncated,
        startup_seconds=daemon.ready_seconds,
    )


def service_grid(options: IngestOptions, events: int) -> tuple[list[tuple[int, int]], list[str]]:
    """(batch, clients) pairs worth running, and notes on the ones skipped: more clients than batches
    would only idle."""
    grid: list[tuple[int, int]] = []
    skipped: list[str] = []
    for batch in options.batch_sizes:
        effective = min(batch, events)
        batches = math.ceil(events / effective)
        for clients in options.clients:
            if clients > 1 and clients > batches:
                skipped.append(f"{clients} clients × {batch:,}-event batches ({batches} batch(es) of {events:,} events)")
            elif (effective, clients) not in grid:
                grid.append((effective, clients))
    return grid, skipped


async def bench_service(ctx: Context, lines: Sequence[bytes], grid: Sequence[tuple[int, int]]) -> list[Row]:
    rows = []
    for batch, clients in grid:
        row = Row("service", batch, clients)
        bodies = bodies_of(lines, batch)
        for number in range(ctx.options.runs):
            run = await service_run(ctx, bodies, len(lines), clients, f"b{batch}-c{clients}-r{number + 1}")
            row.runs.append(run)
            say(
                f"  service batch {batch:,} × {clients} clients, run {number + 1}: {run.rate:,.0f} events/s, "
                f"p99 {percentile(run.latencies_ms, 99):,.0f} ms, peak RSS {(run.peak_rss_kb or 0) / 1024:,.0f} MB"
            )
        rows.append(row)
    return rows


async def bench_memory(ctx: Context, lines: Sequence[bytes]) -> list[Row]:
    """`memory_clients` concurrent batches of `memory_batch` distinct events: the daemon's peak RSS.

    Run twice: with the configured queue_wait, and with a long one, so that the requests wait for
    inbox space instead of answering 503 and being sent again.
    """
    options = ctx.options
    if not options.memory_batch:
        return []
    needed = options.memory_batch * options.memory_clients
    if len(lines) < needed:
        say(f"generating {needed:,} events for the memory configuration...")
        lines = make_lines(needed, options.seed)
    bodies = bodies_of(lines[:needed], options.memory_batch)
    rows: list[Row] = []
    variants: list[tuple[str, dict[str, str]]] = [
        ("configured queue_wait", {}),
        (f"queue_wait {LONG_QUEUE_WAIT:.0f} s", {"PSS_INGEST_QUEUE_WAIT": str(LONG_QUEUE_WAIT)}),
    ]
    for name, env in variants:
        run = await service_run(ctx, bodies, needed, options.memory_clients, f"memory-{len(rows)}", env)
        row = Row(f"service memory check ({name})", options.memory_batch, options.memory_clients, [run], False)
        peak = (run.peak_rss_kb or 0) / 1024
        say(f"  memory check, {name}: {fmt_number(run.rate)} events/s, peak RSS {peak:,.0f} MB {row.failures}")
        rows.append(row)
    return rows


# -- the direct-driver baseline -------------------------------------------------------------


def single_row_statements(
    writer: EventWriter, events: Sequence[Event], expiry_ms: int, now: int
) -> Iterator[tuple[Statement, None]]:
    """The service's statements, one row each: per event, so no write is grouped into a batch.

    The (country, hour) index row is remembered at once, so each is written once, as the service
    (which remembers after each flush) does at best.
    """
    for event in events:
        for statement in writer.statements_for((event,), expiry_ms, now):
            yield statement, None
        writer.remember_hours((event,))


def execute_all(session: Session, statements: Iterator[tuple[Statement, None]], concurrency: int) -> int:
    """Blocking: run every statement with `concurrency` in flight; raises on the first failure."""
    results = execute_concurrent(
        session, statements, concurrency=concurrency, raise_on_first_error=True, results_generator=True
    )
    return sum(1 for _ in results)


async def direct_run(ctx: Context, events: Sequence[Event]) -> Run:
    truncated = await truncate(ctx.db, ctx.options.keyspace, DATA_TABLES)
    writer = await EventWriter.prepare(ctx.db)  # fresh: its index-row cache starts empty, like a new daemon
    expiry_ms = ctx.config.ingest.retention_ms
    # Binding happens inside the timed part (lazily, in the driver's threads), as it does in the service.
    statements = single_row_statements(writer, events, expiry_ms, now_ms())
    meter = CpuMeter({"writer": os.getpid(), "cassandra": ctx.cassandra_pid})
    meter.start()
    began = time.perf_counter()
    count = await asyncio.to_thread(execute_all, ctx.db.session, statements, ctx.options.direct_concurrency)
    seconds = time.perf_counter() - began
    run = Run(events=len(events), seconds=seconds, cpu=meter.stop(), truncate_seconds=truncated)
    say(f"  direct driver: {count:,} statements, {run.rate:,.0f} events/s")
    return run


async def bench_direct(ctx: Context, events: Sequence[Event]) -> Row:
    row = Row(f"direct driver (execute_concurrent, {ctx.options.direct_concurrency} in flight)", None, None)
    for _ in range(ctx.options.runs):
        row.runs.append(await direct_run(ctx, events))
    return row


# -- the limit: what the node absorbs when the client costs almost nothing ------------------


def limit_batches(ctx: Context, writer: EventWriter, events: Sequence[Event]) -> tuple[list[Statement], int]:
    """The writer's own rows and rollup marks for all the events, bound and packed into unlogged batches
    across partitions (as one flush of everything would be); returns them and the count of rows."""
    expiry_ms, now = ctx.config.ingest.retention_ms, now_ms()
    groups = list(writer.rows_by_partition(events, expiry_ms, now).values())
    bounds = BatchBounds(ctx.options.limit_batch, ctx.config.ingest.batch_bytes)
    rows = sum(map(len, groups))
    return packed(groups, bounds) + writer.pending_marks_for(events, expiry_ms, now), rows


async def limit_run(ctx: Context, events: Sequence[Event]) -> Run:
    """Prepared outside the timing: only sending the batches (256 in flight) is timed."""
    truncated = await truncate(ctx.db, ctx.options.keyspace, DATA_TABLES)
    writer = await EventWriter.prepare(ctx.db)
    statements, rows = limit_batches(ctx, writer, events)
    meter = CpuMeter({"writer": os.getpid(), "cassandra": ctx.cassandra_pid})
    meter.start()
    began = time.perf_counter()
    error = first_error(await ctx.db.execute_many(statements, ctx.options.limit_concurrency))
    seconds = time.perf_counter() - began
    if error is not None:
        raise BenchError(f"limit baseline: a batch failed: {error}")
    run = Run(events=len(events), seconds=seconds, cpu=meter.stop(), truncate_seconds=truncated)
    say(f"  limit: {rows:,} rows in {len(statements):,} requests, {run.rate:,.0f} events/s")
    return run


async def bench_limit(ctx: Context, events: Sequence[Event]) -> Row:
    options = ctx.options
    name = (
        f"limit (pre-bound unlogged batches of ≤{options.limit_batch} rows across partitions, "
        f"{options.limit_concurrency} in flight)"
    )
    row = Row(name, None, None)
    for _ in range(options.runs):
        row.runs.append(await limit_run(ctx, events))
    return row


# -- the original design --------------------------------------------------------------------


def insert_original(session: Session, keyspace: str, lines: Sequence[bytes]) -> None:
    """Blocking, as the Flask service was: one synchronous INSERT … JSON per event, no prepare."""
    queries = {kind: f"INSERT INTO {keyspace}.{kind}_events JSON %s" for kind in ("start", "end")}
    for line in lines:
        data = json.loads(line)
        kind = data.pop("event")  # not a column: the event kind picks the table
        session.execute(queries[kind], (json.dumps(data),))


async def original_run(ctx: Context, lines: Sequence[bytes]) -> Run:
    truncated = await truncate(ctx.db, ctx.options.keyspace, ORIGINAL_TABLES)
    meter = CpuMeter({"writer": os.getpid(), "cassandra": ctx.cassandra_pid})
    meter.start()
    began = time.perf_counter()
    await asyncio.to_thread(insert_original, ctx.db.session, ctx.options.keyspace, lines)
    seconds = time.perf_counter() - began
    run = Run(events=len(lines), seconds=seconds, cpu=meter.stop(), truncate_seconds=truncated)
    say(f"  original design: {run.rate:,.0f} events/s over {len(lines):,} events")
    return run


async def bench_original(ctx: Context, lines: Sequence[bytes]) -> Row:
    subset = lines[: ctx.options.original_events]
    for statement in _ORIGINAL_DDL:
        await ctx.db.execute(statement.format(ks=ctx.options.keyspace))
    row = Row(f"original design (sync INSERT … JSON, first {len(subset):,} events)", None, 1)
    for _ in range(ctx.options.runs):
        row.runs.append(await original_run(ctx, subset))
    return row


# -- the session ----------------------------------------------------------------------------


@dataclass(slots=True)
class IngestResult:
    command: str
    options: IngestOptions
    machine: Machine
    skipped: list[str]
    rows: list[Row]  # the service configurations, the memory check, then the three baselines
    limit_rate: float
    direct_rate: float
    original_rate: float

    def record(self) -> dict[str, Any]:
        """Everything, for the JSON file (raw runs included)."""
        return {
            "command": self.command,
            "options": self.options,
            "machine": self.machine,
            "skipped": self.skipped,
            "rows": [row_record(row, self.limit_rate, self.direct_rate, self.original_rate) for row in self.rows],
        }


async def bench(options: IngestOptions) -> IngestResult:
    config = keyspace_config(options.keyspace)
    say(f"generating {options.events:,} events (seed {options.seed})...")
    lines = make_lines(options.events, options.seed)
    events = parse_events(lines, config)
    grid, skipped = service_grid(options, len(lines))
    with keyspace_lock(options.keyspace):
        async with connected(config) as db:
            await ensure_schema(db, config, options.keyspace)
            machine = await describe_machine(db, config)
            rows = await bench_all(Context(options, config, db, cassandra_pid(config)), lines, events, grid)
    limit, direct, original = rows[-3:]
    return IngestResult(command_line(), options, machine, skipped, rows, limit.rate, direct.rate, original.rate)


async def bench_all(
    ctx: Context, lines: Sequence[bytes], events: Sequence[Event], grid: Sequence[tuple[int, int]]
) -> list[Row]:
    """The service configurations, the memory check, then the three baselines (last, in that order)."""
    say(f"service: {len(grid)} configurations × {ctx.options.runs} runs")
    rows = await bench_service(ctx, lines, grid)
    rows += await bench_memory(ctx, lines)
    say("limit baseline...")
    rows.append(await bench_limit(ctx, events))
    say("direct-driver baseline...")
    rows.append(await bench_direct(ctx, events))
    say("original design...")
    rows.append(await bench_original(ctx, lines))
    await truncate(ctx.db, ctx.options.keyspace, DATA_TABLES + ORIGINAL_TABLES)  # leave no bench data behind
    return rows


def row_record(row: Row, limit_rate: float, direct_rate: float, original_rate: float) -> dict[str, Any]:
    latencies = row.latencies_ms
    return {
        "writer": row.writer,
        "batch": row.batch,
        "clients": row.clients,
        "events": row.events,
        "events_per_second_median": row.rate,
        "failures": row.failures,
        "post_p50_ms": percentile(latencies, 50),
        "post_p99_ms": percentile(latencies, 99),
        "writer_cpu_seconds_median": row.cpu("writer"),
        "cassandra_cpu_seconds_median": row.cpu("cassandra"),
        "peak_rss_mb": row.peak_rss_mb,
        "vs_limit": ratio(row.rate, limit_rate),
        "vs_direct": ratio(row.rate, direct_rate),
        "vs_original": ratio(row.rate, original_rate),
        "runs": row.runs,
    }


# -- output ---------------------------------------------------------------------------------

HEADERS = (
    "writer",
    "batch",
    "clients",
    "events/s (median)",
    "POST p50 ms",
    "POST p99 ms",
    "writer CPU s",
    "writer CPU µs/event",
    "Cassandra CPU s",
    "peak RSS MB",
    "vs limit",
    "vs direct",
    "vs original",
)


def table_row(row: Row, limit_rate: float, direct_rate: float, original_rate: float) -> list[str]:
    latencies = row.latencies_ms
    writer_cpu = row.cpu("writer")
    return [
        row.writer,
        fmt_number(row.batch) if row.batch else "—",
        str(row.clients) if row.clients else "—",
        f"{fmt_number(row.rate)} ({row.failures})" if row.failures else fmt_number(row.rate),
        fmt_ms(percentile(latencies, 50)),
        fmt_ms(percentile(latencies, 99)),
        fmt_number(writer_cpu, 1),
        fmt_number(writer_cpu / row.events * 1e6 if row.events else math.nan),
        fmt_number(row.cpu("cassandra"), 1),
        fmt_number(row.peak_rss_mb),
        fmt_ratio(ratio(row.rate, limit_rate)) if row.comparable else "—",
        fmt_ratio(ratio(row.rate, direct_rate)) if row.comparable else "—",
        fmt_ratio(ratio(row.rate, original_rate)) if row.comparable else "—",
    ]


def report(result: IngestResult) -> str:
    rows = [table_row(row, result.limit_rate, result.direct_rate, result.original_rate) for row in result.rows]
    parts = [f"`{result.command}`", machine_markdown(result.machine), legend(result.options), markdown_table(HEADERS, rows)]
    return "\n\n".join(parts) + "\n\n" + " ".join(notes(result))


def legend(options: IngestOptions) -> str:
    return (
        f"{options.events:,} generated events (seed {options.seed}); events/s is the median of {options.runs} "
        "run(s); POST latencies pooled over the runs; writer = the daemon's CPU (service rows) or the bench "
        "process's (baselines), from /proc utime+stime; peak RSS = the daemon's VmHWM. limit = the writer's own rows "
        "and rollup marks for all the events, bound and packed into unlogged batches before the timing, then sent "
        "with 256 in flight: what the node absorbs when the client costs almost nothing."
    )


def notes(result: IngestResult) -> list[str]:
    runs = [run for row in result.rows if row.writer.startswith("service") for run in row.runs]
    truncated = median([run.truncate_seconds for run in runs])
    ready = median([run.startup_seconds for run in runs])
    retries = sum(run.retries for run in runs)
    outside = f"TRUNCATE before each run took {truncated:.2f} s (median), a fresh daemon was ready in {ready:.2f} s"
    lines = [f"Outside the timed part: {outside}; 503 retries during service runs: {retries}."]
    if result.skipped:
        lines.append("Skipped (more clients than batches): " + "; ".join(result.skipped) + ".")
    return lines


# -- the command ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    defaults = IngestOptions()
    parser = subparsers.add_parser("ingest", help="ingest throughput: service vs the limit, direct driver and original design")
    parser.add_argument("--events", type=int, default=None, help=f"events to generate (default: {defaults.events:,})")
    parser.add_argument("--runs", type=int, default=None, help=f"runs per configuration (default: {defaults.runs})")
    parser.add_argument("--batch-sizes", type=int_list, default=None, help="events per POST (default: 100,10000,100000)")
    parser.add_argument("--clients", type=int_list, default=None, help="concurrent posting clients (default: 1,4,8)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 2,000 events, one run, small batches")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="generator seed (default: %(default)s)")
    parser.add_argument("--keyspace", default=defaults.keyspace, help="bench keyspace, emptied between runs (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port of the bench's daemon (default: %(default)s)")
    parser.add_argument("--original-events", type=int, default=None, help="events timed for the original design (default: 10,000)")
    parser.add_argument("--limit-batch", type=int, default=defaults.limit_batch, help="rows per batch of the limit baseline (default: %(default)s)")
    parser.add_argument("--direct-concurrency", type=int, default=defaults.direct_concurrency, help="driver requests in flight (default: %(default)s)")
    parser.add_argument("--memory-batch", type=int, default=None, help="events per batch of the memory check; 0 skips it (default: 100,000)")
    parser.add_argument("--memory-clients", type=int, default=defaults.memory_clients, help="clients of the memory check (default: %(default)s)")
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir, help="where the JSON result goes (default: bench/results)")
    parser.set_defaults(run=run)


def options_from(args: argparse.Namespace) -> IngestOptions:
    """--quick sets small defaults; explicit flags still win."""
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    explicit = {
        "events": args.events,
        "runs": args.runs,
        "batch_sizes": args.batch_sizes,
        "clients": args.clients,
        "original_events": args.original_events,
        "memory_batch": args.memory_batch,
    }
    values.update({name: value for name, value in explicit.items() if value is not None})
    options = IngestOptions(
        seed=args.seed,
        keyspace=args.keyspace,
        port=args.port,
        direct_concurrency=args.direct_concurrency,
        limit_batch=args.limit_batch,
        memory_clients=args.memory_clients,
        results_dir=args.results_dir,
        **values,
    )
    if min(options.events, options.runs, options.original_events, options.direct_concurrency, options.limit_batch) < 1:
        raise BenchError("--events, --runs, --original-events, --direct-concurrency and --limit-batch must be at least 1")
    check_keyspace(options.keyspace)
    return options


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    result = asyncio.run(bench(options))
    return publish("ingest", result, report(result), options.results_dir)
