"""Live fan-out benchmark: N websocket subscribers, POSTed starts; delivery delay and ingest throughput.

    python -m bench fanout --subscribers 500 --events 10000 --batch 500

Ingest is measured twice with the same number of events per run (median of `--runs`): with no
subscriber connected, then with `--subscribers` websocket clients, all subscribed to every
country. `--sampled` of them decode every message and time it; the rest only count what arrives
(bench/subscribers.py), spread over `--processes` worker processes. Every subscriber must account
for every start (received, or reported dropped by a `lagged` notice) before a run ends.

Delivery delay is measured two ways for each start a sampled subscriber receives: after the
acknowledgement (its receipt time minus the time the 200 of the POST that carried it arrived;
negative when the feed was faster than the HTTP answer), and after the send (minus the time just
before that POST was sent, so it includes the POST's own Cassandra write). The send time travels
inside the session id: its first 64 bits are the send time in nanoseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson

from bench.common import (
    RESULTS_DIR,
    BenchError,
    CpuMeter,
    DaemonSpec,
    cassandra_pid,
    check_keyspace,
    connected,
    ensure_schema,
    fmt_ms,
    fmt_number,
    keyspace_config,
    keyspace_lock,
    log_path,
    markdown_table,
    p50_p99,
    percentile,
    running_daemon,
    say,
)
from bench.subscribers import Delivery, Subscription, expected_starts, worker_main

COUNTRIES = ("US", "DE", "GB", "FI", "SE", "FR", "BR", "PL", "NO", "EE", "JP", "ES", "IT", "DK", "NL")
WEIGHTS = (20, 12, 10, 9, 8, 7, 6, 5, 5, 4, 4, 3, 3, 2, 2)
MAX_POST_ATTEMPTS = 10
JSON_HEADERS = {"Content-Type": "application/json"}

Planned = tuple[str, str, str]  # player_id, country, ts


# --- event generation ----------------------------------------------------------------------------


def plan_run(rng: random.Random, events: int, batch: int) -> list[list[Planned]]:
    """Starts spread over countries, players and November 2016, cut into POST batches."""
    planned = [
        (
            f"bench-player-{rng.randrange(1_000_000)}",
            rng.choices(COUNTRIES, WEIGHTS)[0],
            f"2016-11-{rng.randint(1, 30):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
        )
        for _ in range(events)
    ]
    return [planned[offset : offset + batch] for offset in range(0, events, batch)]


def plan_subscriptions(rng: random.Random, subscribers: int, countries: int) -> list[Subscription]:
    """Every country for each subscriber (`countries` 0), else that many, drawn by traffic weight."""
    if countries == 0:
        return [None] * subscribers
    chosen: list[Subscription] = []
    for _ in range(subscribers):
        picked: set[str] = set()
        while len(picked) < min(countries, len(COUNTRIES)):
            picked.add(rng.choices(COUNTRIES, WEIGHTS)[0])
        chosen.append(tuple(sorted(picked)))
    return chosen


def stamped_body(batch: Sequence[Planned], stamp_ns: int) -> bytes:
    """The POST body; every session id carries `stamp_ns` in its first 64 bits (and is unique)."""
    return orjson.dumps(
        [
            {
                "event": "start",
                "player_id": player,
                "session_id": str(uuid.UUID(int=(stamp_ns << 64) | index)),
                "ts": ts,
                "country": country,
            }
            for index, (player, country, ts) in enumerate(batch)
        ]
    )


# --- posting ---------------------------------------------------------------------------------------


@dataclass
class PostRun:
    events: int
    seconds: float
    post_ms: list[float] = field(default_factory=list)
    acks: dict[int, int] = field(default_factory=dict)  # send stamp of a POST -> when its 200 arrived, ns
    retries: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class Stamps:
    """Strictly increasing nanosecond stamps, so session ids never repeat."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


async def post_run(
    session: aiohttp.ClientSession, url: str, batches: list[list[Planned]], concurrency: int, stamps: Stamps
) -> PostRun:
    """POST every batch with `concurrency` requests in flight; time from the first send to the last ack."""
    pending = iter(batches)
    result = PostRun(events=sum(len(batch) for batch in batches), seconds=0.0)

    async def worker() -> None:
        for batch in pending:  # one shared iterator: each batch is taken once
            began = time.perf_counter()
            stamp = stamps.next()
            result.retries += await post_batch(session, url, stamped_body(batch, stamp))
            result.acks[stamp] = time.time_ns()
            result.post_ms.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - began
    return result


async def post_batch(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """POST until 200; a 503 is retried after its Retry-After. Returns the number of retries."""
    for attempt in range(MAX_POST_ATTEMPTS):
        async with session.post(url, data=body, headers=JSON_HEADERS) as response:
            text = await response.text()
            if response.status == 200:
                return attempt
            if response.status != 503:
                raise BenchError(f"POST {url}: {response.status} {text[:300]}")
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    raise BenchError(f"POST {url}: still 503 after {MAX_POST_ATTEMPTS} attempts")


# --- subscribers (worker processes, bench/subscribers.py) ---------------------------------------


class Workers:
    """The subscriber worker processes, driven over pipes: one sampling process, the rest counting."""

    def __init__(self, url: str, subscriptions: list[Subscription], sampled: int, processes: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with a running loop
        counted = subscriptions[sampled:]
        shares = [("sampling", subscriptions[:sampled])] + [
            ("counting", counted[i::processes]) for i in range(processes)
        ]
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for kind, share in shares:
            if not share:
                continue
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(kind, url, share, theirs), daemon=True)
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    async def ready(self) -> int:
        answers = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        return sum(count for _, count in answers)

    async def arm(self, by_country: dict[str, int], timeout: float) -> None:
        for pipe in self._pipes:
            pipe.send(("measure", by_country, timeout))
        await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))

    async def results(self) -> list[Delivery]:
        answers = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        return [delivery for _, delivery in answers]

    async def stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # already gone
                pipe.send(("stop",))
        for process in self._processes:
            await asyncio.to_thread(process.join, 30)  # off the loop: a daemon in this process must answer closes
            if process.is_alive():
                process.terminate()


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class Scenario:
    subscribers: int
    runs: list[PostRun] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    after_ack_ms: list[float] = field(default_factory=list)  # per sampled receipt
    after_send_ms: list[float] = field(default_factory=list)
    fanout_tail: list[float] = field(default_factory=list)  # seconds from the last ack to the last receipt
    cpu: list[dict[str, float]] = field(default_factory=list)  # per run: CPU seconds of the daemon and the node
    expected: int = 0  # starts the subscribers should have got, over all runs
    closed: int = 0  # subscribers the server closed (e.g. 4000 lagging), by the end

    def add_delays(self, deliveries: list[Delivery], acks: dict[int, int]) -> None:
        for delivery in deliveries:
            for stamp, received_ns in delivery.samples:
                self.after_ack_ms.append((received_ns - acks[stamp]) / 1e6)
                self.after_send_ms.append((received_ns - stamp) / 1e6)


async def bench(args: argparse.Namespace) -> list[Scenario]:
    """Against the daemon at `--url`, or one started for the bench (then its and the node's CPU are metered)."""
    if args.url:
        return await measure(args.url, args, CpuMeter({}))
    check_keyspace(args.keyspace)
    config = keyspace_config(args.keyspace)
    overrides = {} if args.fan_out_interval is None else {"PSS_LIVE_FAN_OUT_INTERVAL": str(args.fan_out_interval)}
    spec = DaemonSpec(args.keyspace, args.port, log_path(RESULTS_DIR, "fanout-daemon"), overrides)
    with keyspace_lock(args.keyspace):
        async with connected(config) as db:
            await ensure_schema(db, config, args.keyspace)
        async with running_daemon(spec) as daemon:
            return await measure(spec.url, args, CpuMeter({"daemon": daemon.pid, "cassandra": cassandra_pid(config)}))


async def measure(url: str, args: argparse.Namespace, meter: CpuMeter) -> list[Scenario]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await check_daemon(session, url)
        posting = Posting(session, url, args)
        return [await measure_quiet(posting, args, meter), await measure_busy(posting, url, args, meter)]


class Posting:
    """Plans and posts one run's events; every run gets fresh session ids."""

    __slots__ = ("_session", "_url", "_args", "_rng", "_stamps")

    def __init__(self, session: aiohttp.ClientSession, url: str, args: argparse.Namespace) -> None:
        self._session = session
        self._url = f"{url}/v1/events"
        self._args = args
        self._rng = random.Random(args.seed)
        self._stamps = Stamps()

    def plan(self) -> list[list[Planned]]:
        return plan_run(self._rng, self._args.events, self._args.batch)

    async def post(self, batches: list[list[Planned]]) -> PostRun:
        return await post_run(self._session, self._url, batches, self._args.concurrency, self._stamps)


async def measure_quiet(posting: Posting, args: argparse.Namespace, meter: CpuMeter) -> Scenario:
    quiet = Scenario(0)
    for run in range(args.runs):
        meter.start()
        quiet.runs.append(await posting.post(posting.plan()))
        quiet.cpu.append(meter.stop())
        say(f"  no subscribers, run {run + 1}: {quiet.runs[-1].rate:,.0f} events/s")
    return quiet


async def measure_busy(posting: Posting, url: str, args: argparse.Namespace, meter: CpuMeter) -> Scenario:
    busy = Scenario(args.subscribers)
    live_url = f"{url.replace('http', 'ws', 1)}/v1/live"
    subscriptions = plan_subscriptions(random.Random(args.seed), args.subscribers, args.countries)
    workers = Workers(live_url, subscriptions, min(args.sampled, args.subscribers), args.processes)
    try:
        connected = await workers.ready()
        say(f"  {connected} subscribers connected")
        for run in range(args.runs):
            batches = posting.plan()
            by_country = Counter(country for batch in batches for _, country, _ in batch)
            busy.expected += sum(expected_starts(countries, by_country) for countries in subscriptions)
            await workers.arm(by_country, args.delivery_timeout)
            meter.start()
            posted = await posting.post(batches)
            acked_ns = time.time_ns()
            deliveries = await workers.results()
            busy.cpu.append(meter.stop())  # up to the last receipt: the fan-out's tail included
            busy.runs.append(posted)
            busy.deliveries.extend(deliveries)
            busy.add_delays(deliveries, posted.acks)
            busy.closed = sum(delivery.closed for delivery in deliveries)
            last = max((delivery.last_ns for delivery in deliveries), default=acked_ns)
            busy.fanout_tail.append(max(0.0, (last - acked_ns) / 1e9))
            say(f"  {connected} subscribers, run {run + 1}: {posted.rate:,.0f} events/s")
    finally:
        await workers.stop()
    return busy


async def check_daemon(session: aiohttp.ClientSession, url: str) -> None:
    try:
        async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as response:
            response.raise_for_status()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"daemon not answering at {url}: {exc}") from None


COLUMNS = (
    "subscribers", "events/run", "batch", "ingest events/s (median of {runs})", "POST p50 / p99 ms",
    "starts delivered", "dropped (lagged)", "closed by server", "delivery after ack p50 / p99 ms",
    "delivery after send p50 / p99 ms", "fan-out done after last ack, s (median)", "CPU s/run: daemon / Cassandra / subscribers",
)


def table(scenarios: list[Scenario], args: argparse.Namespace) -> str:
    return markdown_table([column.format(runs=args.runs) for column in COLUMNS], (row(s, args) for s in scenarios))


def row(scenario: Scenario, args: argparse.Namespace) -> list[str]:
    post_ms = [ms for run in scenario.runs for ms in run.post_ms]
    subscribed = "" if not args.countries else f" × {args.countries} {'country' if args.countries == 1 else 'countries'}"
    cells = [
        f"{scenario.subscribers}{subscribed if scenario.subscribers else ''}",
        fmt_number(args.events),
        fmt_number(args.batch),
        fmt_number(statistics.median(run.rate for run in scenario.runs)),
        f"{fmt_ms(percentile(post_ms, 50))} / {fmt_ms(percentile(post_ms, 99))}",
    ]
    cpu = f"{_cpu(scenario, 'daemon')} / {_cpu(scenario, 'cassandra')}"
    if not scenario.subscribers:
        return [*cells, *["—"] * (len(COLUMNS) - len(cells) - 1), f"{cpu} / —"]
    incomplete = sum(not delivery.complete for delivery in scenario.deliveries)
    received = sum(delivery.received for delivery in scenario.deliveries)
    delivered = f"{fmt_number(received)} of {fmt_number(scenario.expected)}"
    return [
        *cells,
        delivered + (f" ({incomplete} waits timed out)" if incomplete else ""),
        fmt_number(sum(delivery.dropped for delivery in scenario.deliveries)),
        str(scenario.closed),
        p50_p99(scenario.after_ack_ms),
        p50_p99(scenario.after_send_ms),
        f"{statistics.median(scenario.fanout_tail):.2f}",
        f"{cpu} / {sum(delivery.cpu_seconds for delivery in scenario.deliveries) / len(scenario.runs):.1f}",
    ]


def _cpu(scenario: Scenario, process: str) -> str:
    """Median CPU seconds per run of a metered process; — when it was not metered (a daemon at --url)."""
    seconds = [run[process] for run in scenario.cpu if process in run]
    return f"{statistics.median(seconds):.1f}" if seconds else "—"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="measure the daemon at this base URL (default: start one for the bench)")
    parser.add_argument("--keyspace", default="bench_fanout", help="keyspace of the bench's daemon (default: %(default)s)")
    parser.add_argument("--port", type=int, default=18090, help="port of the bench's daemon (default: %(default)s)")
    parser.add_argument(
        "--fan-out-interval", type=float, default=None,
        help="live.fan_out_interval of the bench's daemon, s (default: config.toml's)",
    )
    parser.add_argument("--subscribers", type=int, default=500, help="websocket clients (default: %(default)s)")
    parser.add_argument(
        "--countries", type=int, default=0,
        help="countries per subscriber, drawn by traffic weight; 0 = every country (default: %(default)s)",
    )
    parser.add_argument("--events", type=int, default=20_000, help="starts per run (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1_000, help="events per POST (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario, median reported (default: %(default)s)")
    parser.add_argument("--sampled", type=int, default=20, help="subscribers that decode and time every message (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=1, help="processes holding the counting subscribers (default: %(default)s)")
    parser.add_argument("--delivery-timeout", type=float, default=300.0, help="wait limit per run, s (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2016, help="seed for the generated events (default: %(default)s)")


def register(subparsers: Any) -> None:
    """For `python -m bench fanout …`."""
    parser = subparsers.add_parser("fanout", help="live feed: delivery delay and ingest throughput with N subscribers")
    add_arguments(parser)
    parser.set_defaults(run=run)


def check_counts(args: argparse.Namespace) -> None:
    """The counts a live-feed bench takes must all be at least 1."""
    if min(args.subscribers, args.events, args.batch, args.concurrency, args.runs, args.processes) < 1:
        raise BenchError("--subscribers, --events, --batch, --concurrency, --runs and --processes must be at least 1")


def run(args: argparse.Namespace) -> int:
    check_counts(args)
    if args.url:
        args.url = args.url.rstrip("/")
    print(table(asyncio.run(bench(args)), args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
