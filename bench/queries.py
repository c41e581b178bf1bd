"""`python -m bench queries`: latency and requests/s of the read routes on a loaded dataset, alone and under ingest."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TextIO

import aiohttp
import orjson

from bench.common import (
    DATA_TABLES,
    DEMO_NOW,
    RESULTS_DIR,
    BenchError,
    CpuMeter,
    Daemon,
    DaemonSpec,
    Machine,
    cassandra_pid,
    check_keyspace,
    client_session,
    command_line,
    connected,
    describe_machine,
    ensure_schema,
    fmt_ms,
    fmt_number,
    int_list,
    keyspace_config,
    keyspace_lock,
    log_path,
    machine_markdown,
    markdown_table,
    percentile,
    publish,
    running_daemon,
    say,
    truncate,
)
from bench.ingest import post_one
from cql.driver import Database
from daemon.core.instants import parse_instant
from daemon.tools.gen.model import GenOptions, generate

NDJSON_HEADERS = {"Content-Type": "application/x-ndjson"}
TARGET_P99_MS = 50.0
MAX_REQUESTS_PER_WORKER = 1_000_000  # a bound on each measuring loop besides its deadline
MAX_INGEST_CYCLES = 1_000  # passes over the background events before the ingest gives up repeating
SETTLE_POLL = 1.0
# "Stopped changing" when the expected total is never reached: longer than the refresher's rest
# after a long round (it rests three times as long as it worked), or a pause looks like the end.
SETTLE_STABLE_SECONDS = 180.0
REQUEST_TIMEOUT = 120.0
MARKER_TABLE = "bench_marker"
# The fresh background events happen "now": in the minutes just after the frozen clock, inside the
# accepted future margin, so they load Cassandra without moving any window's answer. A narrow span
# keeps the rollup refresher's work like live traffic's (a few dirty minutes per round); spread
# over hours, every round would recount a thousand minutes, which live traffic never causes.
FRESH_SPAN = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    events: int = GenOptions().events
    seed: int = 2016
    concurrency: tuple[int, ...] = (1, 8, 32)
    duration: float = 10.0
    with_ingest: bool = False
    keyspace: str = "bench_queries"
    port: int = 18082
    load: str = "auto"  # auto: load unless the marker row says the dataset is there; never; always
    load_batch: int = 10_000
    load_concurrency: int = 4
    ingest_events: int = 100_000
    ingest_batch: int = 1_000
    ingest_clients: int = 2
    ingest_rate: float = 0.0  # events/s of the background ingest; 0 = as fast as it goes
    warmup: int = 20
    settle_timeout: float = 1_800.0
    results_dir: Path = RESULTS_DIR


# -- the dataset ----------------------------------------------------------------------------


@dataclass(slots=True)
class Facts:
    """What the measuring loops draw from, and the total the rollups must settle at."""

    countries: set[str] = field(default_factory=set)
    players: set[str] = field(default_factory=set)
    starts_until_now: int = 0  # starts inside (now - 8760 h, now]: the settled 8760-hour total


def dataset_lines(options: QueryOptions) -> Iterable[str]:
    return generate(GenOptions(events=options.events, seed=options.seed))


def fresh_lines(options: QueryOptions) -> list[bytes]:
    now = parse_instant(DEMO_NOW)
    gen = GenOptions(
        events=options.ingest_events, seed=options.seed + 1, start=now + dt.timedelta(seconds=1), end=now + FRESH_SPAN
    )
    return [line.encode() for line in generate(gen)]


def observe(facts: Facts, line: str, now_text: str) -> None:
    """Add one event to the facts; `now_text` is the clock as the dataset formats timestamps."""
    event = orjson.loads(line)
    facts.players.add(event["player_id"])
    if event["event"] == "start":
        facts.countries.add(event["country"])
        if event["ts"] <= now_text:  # same fixed format, so text order is time order
            facts.starts_until_now += 1


def gather_facts(lines: Iterable[str], sink: TextIO | None = None) -> Facts:
    """One pass over the dataset: the facts, and the lines written to `sink` when loading."""
    now_text = parse_instant(DEMO_NOW).replace(tzinfo=None).isoformat()
    facts = Facts()
    for line in lines:
        observe(facts, line, now_text)
        if sink is not None:
            sink.write(line + "\n")
    return facts


def write_dataset(path: Path, options: QueryOptions) -> Facts:
    """Blocking: the dataset as a JSON Lines file for the loader, and its facts."""
    with open(path, "w", encoding="utf-8") as sink:
        return gather_facts(dataset_lines(options), sink)


# -- loading --------------------------------------------------------------------------------


async def ensure_marker_table(db: Database, keyspace: str) -> None:
    """The bench's own table: one row saying which dataset the keyspace holds, written after a full load."""
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{MARKER_TABLE}"
        " (name text PRIMARY KEY, events int, seed int, loaded_at timestamp)"
    )


async def marker_matches(db: Database, options: QueryOptions) -> bool:
    rows = await db.execute(f"SELECT events, seed FROM {options.keyspace}.{MARKER_TABLE} WHERE name = 'dataset'")
    return bool(rows) and tuple(rows[0]) == (options.events, options.seed)


async def write_marker(db: Database, options: QueryOptions) -> None:
    await db.execute(
        f"INSERT INTO {options.keyspace}.{MARKER_TABLE} (name, events, seed, loaded_at) VALUES ('dataset', %s, %s, %s)",
        (options.events, options.seed, dt.datetime.now(dt.UTC)),
    )


async def load_dataset(db: Database, options: QueryOptions, url: str) -> tuple[Facts, dict[str, Any]]:
    """Empty the keyspace, stream the dataset through the daemon with the loader, mark it loaded."""
    from daemon.tools.load.loader import LoadOptions, load

    await truncate(db, options.keyspace, (*DATA_TABLES, MARKER_TABLE))
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as directory:
        path = Path(directory) / "dataset.jsonl"
        say(f"generating {options.events:,} events (seed {options.seed})...")
        facts = await asyncio.to_thread(write_dataset, path, options)
        say(
            f"loading them through the daemon ({options.load_batch:,}-event batches, {options.load_concurrency} in flight)..."
        )
        loaded = LoadOptions(url=url, batch_size=options.load_batch, concurrency=options.load_concurrency)
        summary = await load(path, loaded)
    if not summary.ok or summary.accepted != options.events:
        raise BenchError(f"the load did not store every event: {summary.accepted:,} accepted of {options.events:,}")
    say(f"loaded in {summary.wall_seconds:.1f} s ({summary.events_per_second:,.0f} events/s)")
    return facts, {"seconds": summary.wall_seconds, "events_per_second": summary.events_per_second}


async def current_total(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/v1/session-starts?hours=8760") as response:
        if response.status != 200:
            raise BenchError(f"GET /v1/session-starts: HTTP {response.status}")
        return int((await response.json())["total"])


async def settle(session: aiohttp.ClientSession, url: str, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until the 8760-hour total reaches the dataset's count of starts, or stops changing.

    The rollups are recounted in the daemon's background with nothing to await from outside,
    so this polls, bounded by `timeout`.
    """
    began = time.monotonic()
    last, since = -1, began
    while time.monotonic() - began < timeout:
        total = await current_total(session, url)
        now = time.monotonic()
        if total != last:
            last, since = total, now
        if total == expected or now - since >= SETTLE_STABLE_SECONDS:
            break
        await asyncio.sleep(SETTLE_POLL)
    seconds = time.monotonic() - began
    if last != expected:
        say(f"warning: the 8760-hour total settled at {last:,}, expected {expected:,}")
    return {"total": last, "expected": expected, "seconds": seconds}


# -- the queries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    route: str  # as shown in the table
    main: bool  # one of the two main queries (p99 target)
    path: Callable[[random.Random], str]


def queries_for(facts: Facts) -> list[Query]:
    countries = sorted(facts.countries)
    players = sorted(facts.players)

    def country_starts(hours: int) -> Query:
        return Query(
            f"/v1/countries/{{C}}/session-starts?hours={hours}",
            True,
            lambda rng: f"/v1/countries/{rng.choice(countries)}/session-starts?hours={hours}",
        )

    def totals(hours: int) -> Query:
        return Query(f"/v1/session-starts?hours={hours}", True, lambda rng: f"/v1/session-starts?hours={hours}")

    def series(hours: int, step: str) -> Query:
        path = f"/v1/session-starts/series?hours={hours}&step={step}"
        return Query(path, True, lambda rng: path)

    def fetch(hours: int) -> Query:
        return Query(f"/fetch/{{C}}/{hours}", False, lambda rng: f"/fetch/{rng.choice(countries)}/{hours}")

    return [
        *(country_starts(hours) for hours in (1, 24, 720)),
        *(totals(hours) for hours in (1, 24, 8760)),
        series(24, "hour"),
        series(720, "day"),
        Query("/v1/players/{id}/sessions", False, lambda rng: f"/v1/players/{rng.choice(players)}/sessions"),
        *(fetch(hours) for hours in (1, 24, 720)),
        Query("/complete_sessions/{id}", False, lambda rng: f"/complete_sessions/{rng.choice(players)}"),
    ]


@dataclass(slots=True)
class Measurement:
    phase: str
    route: str
    main: bool
    concurrency: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    response_bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, int, bool]:
    """(milliseconds, body bytes, ok) of one GET; a failed connection counts as an error, not a crash."""
    began = time.perf_counter()
    try:
        async with session.get(url) as response:
            body = await response.read()
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        body, ok = b"", False
    return (time.perf_counter() - began) * 1000, len(body), ok


async def measure(
    session: aiohttp.ClientSession,
    url: str,
    query: Query,
    concurrency: int,
    duration: float,
    rng: random.Random,
    meter: CpuMeter,
    phase: str,
) -> Measurement:
    """`concurrency` closed-loop clients send the query back to back for `duration` seconds."""
    result = Measurement(phase, query.route, query.main, concurrency)
    deadline = time.perf_counter() + duration

    async def client() -> None:
        for _ in range(MAX_REQUESTS_PER_WORKER):
            if time.perf_counter() >= deadline:
                return
            ms, size, ok = await timed_get(session, url + query.path(rng))
            result.latencies_ms.append(ms)
            result.response_bytes += size
            result.errors += not ok

    meter.start()
    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    result.seconds = time.perf_counter() - began
    result.cpu = meter.stop()
    return result


async def warm_up(session: aiohttp.ClientSession, url: str, query: Query, count: int, rng: random.Random) -> None:
    """A few unrecorded requests: prepared statements, connections and caches are warm before timing."""
    for _ in range(count):
        await timed_get(session, url + query.path(rng))


async def measure_phase(
    session: aiohttp.ClientSession,
    daemon: Daemon,
    queries: Sequence[Query],
    options: QueryOptions,
    meter: CpuMeter,
    phase: str,
) -> list[Measurement]:
    rng = random.Random(options.seed)
    url = daemon.spec.url
    results = []
    for query in queries:
        await warm_up(session, url, query, options.warmup, rng)
        for concurrency in options.concurrency:
            measured = await measure(session, url, query, concurrency, options.duration, rng, meter, phase)
            daemon.check_alive()  # a dead daemon's numbers (or its port's next owner's) are worthless
            say(
                f"  {phase}: {query.route} × {concurrency}: {measured.rate:,.0f} req/s, "
                f"p50 {percentile(measured.latencies_ms, 50):.1f} ms, p99 {percentile(measured.latencies_ms, 99):.1f} ms"
            )
            results.append(measured)
    return results


# -- the background ingest ------------------------------------------------------------------


class BackgroundIngest:
    """Posts fresh events while the block runs (cycling over them: writes are idempotent upserts)."""

    __slots__ = (
        "_batch",
        "_began",
        "_bodies",
        "_clients",
        "_rate",
        "_sent",
        "_session",
        "_stop",
        "_tasks",
        "_url",
        "events",
        "retries",
        "seconds",
    )

    def __init__(self, session: aiohttp.ClientSession, url: str, lines: Sequence[bytes], options: QueryOptions) -> None:
        self._session = session
        self._url = f"{url}/v1/events"
        self._batch = options.ingest_batch
        self._bodies = [b"\n".join(lines[i : i + self._batch]) for i in range(0, len(lines), self._batch)]
        self._clients = options.ingest_clients
        self._rate = options.ingest_rate
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sent = 0
        self._began = 0.0
        self.events = 0
        self.retries = 0
        self.seconds = 0.0

    async def __aenter__(self) -> Self:
        self._began = time.perf_counter()
        self._tasks = [asyncio.create_task(self._sender(), name=f"bench-ingest-{i}") for i in range(self._clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()  # each sender finishes the batch it is posting, then returns
        await asyncio.gather(*self._tasks)
        self.seconds = time.perf_counter() - self._began

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    async def _sender(self) -> None:
        for _ in range(MAX_INGEST_CYCLES * len(self._bodies)):
            if self._stop.is_set():
                return
            index = self._sent
            self._sent += 1
            await self._pace(index)
            body = self._bodies[index % len(self._bodies)]
            accepted, retries = await post_one(self._session, self._url, body)
            self.events += accepted or 0  # a batch still refused after the retry budget adds nothing
            self.retries += retries

    async def _pace(self, index: int) -> None:
        """With a rate, batch `index` leaves no earlier than its share of the schedule allows."""
        if self._rate <= 0:
            return
        due = self._began + index * self._batch / self._rate
        delay = due - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass  # the due time came; send


# -- the session ----------------------------------------------------------------------------


async def prepare_dataset(db: Database, options: QueryOptions, url: str) -> tuple[Facts, dict[str, Any] | None]:
    if options.load == "always" or (options.load == "auto" and not await marker_matches(db, options)):
        facts, loaded = await load_dataset(db, options, url)
        return facts, loaded
    say(f"keyspace {options.keyspace} already holds the dataset; not loading (--reload forces it)")
    return gather_facts(dataset_lines(options)), None


@dataclass(slots=True)
class QueryResult:
    command: str
    options: QueryOptions
    machine: Machine
    facts: Facts
    load: dict[str, Any] | None  # None when the keyspace already held the dataset
    settle: dict[str, Any]
    ingest: dict[str, Any] | None  # the background ingest, with --with-ingest
    measurements: list[Measurement]

    def record(self) -> dict[str, Any]:
        """Everything for the JSON file (latencies reduced to percentiles)."""
        facts = self.facts
        dataset = {
            "events": self.options.events,
            "seed": self.options.seed,
            "countries": len(facts.countries),
            "players": len(facts.players),
            "starts_until_now": facts.starts_until_now,
        }
        return {
            "command": self.command,
            "options": self.options,
            "machine": self.machine,
            "dataset": dataset,
            "load": self.load,
            "settle": self.settle,
            "background_ingest": self.ingest,
            "measurements": [record(item) for item in self.measurements],
        }


async def bench(options: QueryOptions) -> QueryResult:
    config = keyspace_config(options.keyspace)
    fresh = fresh_lines(options) if options.with_ingest else []
    spec = DaemonSpec(options.keyspace, options.port, log_path(options.results_dir, "queries-daemon"))
    connections = max(options.concurrency) + options.ingest_clients
    with keyspace_lock(options.keyspace):
        async with connected(config) as db:
            await ensure_schema(db, config, options.keyspace)
            await ensure_marker_table(db, options.keyspace)
            machine = await describe_machine(db, config)
            async with running_daemon(spec) as daemon, client_session(connections, REQUEST_TIMEOUT) as session:
                facts, loaded = await prepare_dataset(db, options, spec.url)
                settled = await settle_rollups(session, daemon, facts, options)
                if loaded is not None and settled["total"] == facts.starts_until_now:
                    await write_marker(db, options)  # only once the rollups are right: anything else reloads
                measurements, ingest = await measure_all(session, daemon, facts, fresh, options, cassandra_pid(config))
    return QueryResult(command_line(), options, machine, facts, loaded, settled, ingest, measurements)


async def settle_rollups(
    session: aiohttp.ClientSession, daemon: Daemon, facts: Facts, options: QueryOptions
) -> dict[str, Any]:
    say("waiting for the rollups to settle...")
    settled = await settle(session, daemon.spec.url, facts.starts_until_now, options.settle_timeout)
    daemon.check_alive()
    say(f"settled at {settled['total']:,} starts after {settled['seconds']:.0f} s")
    return settled


async def measure_all(
    session: aiohttp.ClientSession,
    daemon: Daemon,
    facts: Facts,
    fresh: Sequence[bytes],
    options: QueryOptions,
    node_pid: int | None,
) -> tuple[list[Measurement], dict[str, Any] | None]:
    queries = queries_for(facts)
    meter = CpuMeter({"daemon": daemon.pid, "cassandra": node_pid})
    measurements = await measure_phase(session, daemon, queries, options, meter, "alone")
    if not options.with_ingest:
        return measurements, None
    async with BackgroundIngest(session, daemon.spec.url, fresh, options) as background:
        measurements += await measure_phase(session, daemon, queries, options, meter, "with ingest")
    say(f"background ingest: {background.rate:,.0f} events/s over {background.seconds:.0f} s")
    ingest = {
        "events": background.events,
        "seconds": background.seconds,
        "events_per_second": background.rate,
        "retries": background.retries,
        "batch": options.ingest_batch,
        "clients": options.ingest_clients,
        "target_rate": options.ingest_rate,
    }
    return measurements, ingest


# -- output ---------------------------------------------------------------------------------

CPU_OF = ("daemon", "cassandra")  # processes whose CPU per request is shown
HEADERS = (
    "phase",
    "route",
    "clients",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "avg KB",
    "daemon CPU ms/req",
    "node CPU ms/req",
    "p99 < 50 ms",
)


def table_row(item: Measurement) -> list[str]:
    p99 = percentile(item.latencies_ms, 99)
    alone = item.requests and item.phase == "alone"
    return [
        item.phase,
        f"`{item.route}`",
        str(item.concurrency),
        fmt_number(item.requests),
        fmt_number(item.rate),
        fmt_ms(percentile(item.latencies_ms, 50)),
        fmt_ms(p99),
        fmt_ms(max(item.latencies_ms, default=float("nan"))),
        str(item.errors),
        fmt_number(item.response_bytes / item.requests / 1024, 1) if item.requests else "—",
        # Under ingest the CPU is mostly the ingest's: per request it would mislead.
        *(fmt_number(item.cpu.get(name, float("nan")) * 1000 / item.requests, 2) if alone else "—" for name in CPU_OF),
        ("yes" if p99 < TARGET_P99_MS else "**no**") if item.main else "",
    ]


def record(item: Measurement) -> dict[str, Any]:
    return {
        "phase": item.phase,
        "route": item.route,
        "main": item.main,
        "concurrency": item.concurrency,
        "seconds": item.seconds,
        "requests": item.requests,
        "requests_per_second": item.rate,
        "p50_ms": percentile(item.latencies_ms, 50),
        "p99_ms": percentile(item.latencies_ms, 99),
        "max_ms": max(item.latencies_ms, default=float("nan")),
        "errors": item.errors,
        "response_bytes": item.response_bytes,
        "cpu_seconds": item.cpu,
    }


def report(result: QueryResult) -> str:
    parts = [f"`{result.command}`", machine_markdown(result.machine), " ".join(legend(result))]
    parts.append(markdown_table(HEADERS, [table_row(item) for item in result.measurements]))
    return "\n\n".join(parts)


def legend(result: QueryResult) -> list[str]:
    options, facts, settled = result.options, result.facts, result.settle
    loaded = (
        f"Loaded through the daemon in {result.load['seconds']:.0f} s ({result.load['events_per_second']:,.0f} events/s)."
        if result.load
        else "Already loaded (marker row)."
    )
    dataset = (
        f"Dataset: {options.events:,} generated events (seed {options.seed}), {len(facts.players):,} players, "
        f"{len(facts.countries)} countries; service clock frozen at {DEMO_NOW}."
    )
    cells = (
        f"Each cell: {options.duration:g} s of closed-loop clients on one keep-alive pool, after "
        f"{options.warmup} warm-up requests per route; {{C}} and {{id}} drawn at random from the dataset."
    )
    rollups = f"Rollups settled at {settled['total']:,} starts (expected {settled['expected']:,}) after {settled['seconds']:.0f} s."
    lines = [dataset, loaded, rollups, cells]
    ingest = result.ingest
    if ingest:
        pace = f"paced at {ingest['target_rate']:,.0f} events/s" if ingest["target_rate"] else "unpaced"
        lines.append(
            f"With ingest: {ingest['clients']} clients posting {ingest['batch']:,}-event batches of fresh events "
            f"({pace}) sustained {ingest['events_per_second']:,.0f} events/s ({ingest['retries']} 503 retries)."
        )
    return lines


# -- the command ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    d = QueryOptions()
    parser = subparsers.add_parser("queries", help="read latency and throughput on a loaded dataset")
    parser.add_argument(
        "--events", type=int, default=d.events, help="dataset size (default: %(default)s, the reference size)"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="generator seed (default: %(default)s)")
    parser.add_argument(
        "--concurrency", type=int_list, default=d.concurrency, help="concurrent clients (default: 1,8,32)"
    )
    parser.add_argument(
        "--duration", type=float, default=d.duration, help="seconds per route and level (default: %(default)s)"
    )
    parser.add_argument("--with-ingest", action="store_true", help="measure again while fresh events are posted")
    parser.add_argument(
        "--ingest-rate", type=float, default=d.ingest_rate, help="background events/s; 0 = unpaced (default)"
    )
    parser.add_argument(
        "--ingest-batch", type=int, default=d.ingest_batch, help="background batch size (default: %(default)s)"
    )
    parser.add_argument(
        "--ingest-clients", type=int, default=d.ingest_clients, help="background clients (default: %(default)s)"
    )
    parser.add_argument(
        "--keyspace",
        default=None,
        help=f"bench keyspace (default: {d.keyspace}, or {d.keyspace}_N for --events N other than the default)",
    )
    parser.add_argument("--port", type=int, default=d.port, help="port of the bench's daemon (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-load", dest="load", action="store_const", const="never", help="use the keyspace as it is")
    group.add_argument(
        "--reload", dest="load", action="store_const", const="always", help="load even if the marker says loaded"
    )
    parser.add_argument("--load-batch", type=int, default=d.load_batch, help="loader batch size (default: %(default)s)")
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=d.load_concurrency,
        help="loader requests in flight (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup", type=int, default=d.warmup, help="unrecorded requests per route (default: %(default)s)"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=d.results_dir, help="where the JSON result goes (default: bench/results)"
    )
    parser.set_defaults(run=run, load="auto")


def default_keyspace(events: int) -> str:
    """One keyspace per dataset size, so a quick run never reloads over the full dataset (or back)."""
    defaults = QueryOptions()
    return defaults.keyspace if events == defaults.events else f"{defaults.keyspace}_{events}"


def options_from(args: argparse.Namespace) -> QueryOptions:
    options = QueryOptions(
        events=args.events,
        seed=args.seed,
        concurrency=args.concurrency,
        duration=args.duration,
        with_ingest=args.with_ingest,
        keyspace=args.keyspace or default_keyspace(args.events),
        port=args.port,
        load=args.load,
        load_batch=args.load_batch,
        load_concurrency=args.load_concurrency,
        ingest_batch=args.ingest_batch,
        ingest_clients=args.ingest_clients,
        ingest_rate=args.ingest_rate,
        warmup=args.warmup,
        results_dir=args.results_dir,
    )
    if options.events < 1 or options.duration <= 0:
        raise BenchError("--events must be at least 1 and --duration positive")
    check_keyspace(options.keyspace)
    return options


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    result = asyncio.run(bench(options))
    return publish("queries", result, report(result), options.results_dir)
