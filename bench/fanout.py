"""Live fan-out benchmark: N websocket subscribers, POSTed starts; delivery delay and ingest throughput.

    python -m bench.fanout --url http://127.0.0.1:8080 --subscribers 500 --events 20000 --batch 1000

Ingest is measured twice with the same number of events per run (median of `--runs`): with no
subscriber connected, then with `--subscribers` websocket clients (spread over `--processes` worker
processes so the readers are not the bottleneck of one Python process). The delivery delay of a
start is its receipt time minus the time taken just before the POST that carried it was built and
sent; it therefore includes the HTTP request, the Cassandra write and the fan-out. (Measuring from
the POST's acknowledgement would give negative values: the daemon publishes a start before it
answers the POST.) The send time travels inside the session id: its first 64 bits are the send
time in nanoseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
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

from bench.common import BenchError, fmt_ms, fmt_number, markdown_table, percentile, say

COUNTRIES = ("US", "DE", "GB", "FI", "SE", "FR", "BR", "PL", "NO", "EE", "JP", "ES", "IT", "DK", "NL")
WEIGHTS = (20, 12, 10, 9, 8, 7, 6, 5, 5, 4, 4, 3, 3, 2, 2)
HISTOGRAM_BASE_MS = 0.01
HISTOGRAM_GROWTH = 1.02  # buckets 2% wide: percentiles within 2%
MAX_POST_ATTEMPTS = 10
JSON_HEADERS = {"Content-Type": "application/json"}

Planned = tuple[str, str, str]  # player_id, country, ts


class Histogram:
    """Log-bucketed delays in milliseconds; mergeable across processes."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    def add(self, ms: float) -> None:
        bucket = 0 if ms <= HISTOGRAM_BASE_MS else int(math.log(ms / HISTOGRAM_BASE_MS, HISTOGRAM_GROWTH)) + 1
        self.counts[bucket] += 1

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        total = self.total
        if not total:
            return None
        rank = math.ceil(p / 100 * total)
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return HISTOGRAM_BASE_MS * HISTOGRAM_GROWTH**bucket
        return None


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


def stamp_of(session_id: str) -> int:
    return int(session_id[:8] + session_id[9:13] + session_id[14:18], 16)


# --- posting ---------------------------------------------------------------------------------------


@dataclass
class PostRun:
    events: int
    seconds: float
    post_ms: list[float] = field(default_factory=list)
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
            body = stamped_body(batch, stamps.next())
            result.retries += await post_batch(session, url, body)
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


# --- subscribers (worker processes) -----------------------------------------------------------


@dataclass
class Delivery:
    """What one worker's subscribers saw during one measured run."""

    histogram: dict[int, int]
    received: int
    dropped: int
    closed: int
    last_ns: int
    complete: bool


class SubscriberGroup:
    """Runs in a worker process: holds `count` websockets, counts and times what arrives."""

    def __init__(self, url: str, count: int, pipe: Connection) -> None:
        self._url = url
        self._count = count
        self._pipe = pipe
        self._expected = 0
        self._progress: list[int] = []
        self._remaining = 0
        self._done = asyncio.Event()
        self._histogram = Histogram()
        self._received = self._dropped = self._closed = self._last_ns = 0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)  # the default limit of 100 would cap the sockets
        async with aiohttp.ClientSession(connector=connector) as session:
            sockets = await asyncio.gather(*(self._connect(session) for _ in range(self._count)))
            readers = [asyncio.create_task(self._read(index, ws)) for index, ws in enumerate(sockets)]
            self._pipe.send(("ready", len(sockets)))
            while (command := await asyncio.to_thread(self._pipe.recv))[0] == "measure":
                _, expected, timeout = command
                self._arm(expected)
                self._pipe.send(("armed",))
                with contextlib.suppress(TimeoutError):  # reported as incomplete
                    await asyncio.wait_for(self._done.wait(), timeout)
                self._pipe.send(("result", self._result()))
            await asyncio.gather(*(ws.close() for ws in sockets))
            await asyncio.gather(*readers)

    async def _connect(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        ws = await session.ws_connect(self._url, max_msg_size=0)
        greeting = await ws.receive_json(timeout=30)
        assert greeting["type"] == "subscribed", greeting
        return ws

    def _arm(self, expected: int) -> None:
        self._expected = expected
        self._progress = [0] * self._count
        self._remaining = self._count - self._closed
        self._histogram = Histogram()
        self._received = self._dropped = self._last_ns = 0
        self._done.clear()
        if self._remaining <= 0 or expected == 0:
            self._done.set()

    def _result(self) -> Delivery:
        return Delivery(
            dict(self._histogram.counts), self._received, self._dropped, self._closed, self._last_ns,
            complete=self._done.is_set(),
        )

    async def _read(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.time_ns()
            data = orjson.loads(message.data)
            if data["type"] == "session_start":
                self._histogram.add((now - stamp_of(data["session_id"])) / 1e6)
                self._received += 1
                self._count_toward(index, 1, now)
            elif data["type"] == "lagged":
                self._dropped += data["dropped"]
                self._count_toward(index, data["dropped"], now)
        if ws.close_code != aiohttp.WSCloseCode.OK:
            self._closed += 1  # closed by the server (lagging, shutdown): stop waiting for it
            self._count_toward(index, self._expected, time.time_ns())

    def _count_toward(self, index: int, amount: int, now: int) -> None:
        if not self._progress:
            return  # not armed yet
        before = self._progress[index]
        self._progress[index] = before + amount
        self._last_ns = max(self._last_ns, now)
        if before < self._expected <= before + amount:
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()


def subscriber_process(url: str, count: int, pipe: Connection) -> None:
    asyncio.run(SubscriberGroup(url, count, pipe).run())


class Workers:
    """The subscriber worker processes, driven over pipes."""

    def __init__(self, url: str, subscribers: int, processes: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with a running loop
        shares = [subscribers // processes + (1 if i < subscribers % processes else 0) for i in range(processes)]
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for share in shares:
            if share == 0:
                continue
            ours, theirs = context.Pipe()
            process = context.Process(target=subscriber_process, args=(url, share, theirs), daemon=True)
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    async def ready(self) -> int:
        answers = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        return sum(count for _, count in answers)

    async def arm(self, expected: int, timeout: float) -> None:
        for pipe in self._pipes:
            pipe.send(("measure", expected, timeout))
        await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))

    async def results(self) -> list[Delivery]:
        answers = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        return [delivery for _, delivery in answers]

    def stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # already gone
                pipe.send(("stop",))
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class Scenario:
    subscribers: int
    runs: list[PostRun] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    fanout_tail: list[float] = field(default_factory=list)  # seconds from the last ack to the last receipt
    closed: int = 0  # subscribers the server closed (e.g. 4000 lagging), by the end


async def bench(args: argparse.Namespace) -> list[Scenario]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await check_daemon(session, args.url)
        posting = Posting(session, args)
        return [await measure_quiet(posting, args), await measure_busy(posting, args)]


class Posting:
    """Plans and posts one run's events; every run gets fresh session ids."""

    __slots__ = ("_session", "_url", "_args", "_rng", "_stamps")

    def __init__(self, session: aiohttp.ClientSession, args: argparse.Namespace) -> None:
        self._session = session
        self._url = f"{args.url}/v1/events"
        self._args = args
        self._rng = random.Random(args.seed)
        self._stamps = Stamps()

    async def run(self) -> PostRun:
        batches = plan_run(self._rng, self._args.events, self._args.batch)
        return await post_run(self._session, self._url, batches, self._args.concurrency, self._stamps)


async def measure_quiet(posting: Posting, args: argparse.Namespace) -> Scenario:
    quiet = Scenario(0)
    for run in range(args.runs):
        quiet.runs.append(await posting.run())
        say(f"  no subscribers, run {run + 1}: {quiet.runs[-1].rate:,.0f} events/s")
    return quiet


async def measure_busy(posting: Posting, args: argparse.Namespace) -> Scenario:
    busy = Scenario(args.subscribers)
    live_url = f"{args.url.replace('http', 'ws', 1)}/v1/live"
    workers = Workers(live_url, args.subscribers, max(1, min(args.processes, args.subscribers)))
    try:
        connected = await workers.ready()
        say(f"  {connected} subscribers connected")
        for run in range(args.runs):
            await workers.arm(args.events, args.delivery_timeout)
            posted = await posting.run()
            acked_ns = time.time_ns()
            deliveries = await workers.results()
            busy.runs.append(posted)
            busy.deliveries.extend(deliveries)
            busy.closed = sum(delivery.closed for delivery in deliveries)
            last = max((delivery.last_ns for delivery in deliveries), default=acked_ns)
            busy.fanout_tail.append(max(0.0, (last - acked_ns) / 1e9))
            say(f"  {connected} subscribers, run {run + 1}: {posted.rate:,.0f} events/s")
    finally:
        workers.stop()
    return busy


async def check_daemon(session: aiohttp.ClientSession, url: str) -> None:
    try:
        async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as response:
            response.raise_for_status()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"daemon not answering at {url}: {exc}") from None


COLUMNS = (
    "subscribers", "events/run", "batch", "ingest events/s (median of {runs})", "POST p50 / p99 ms",
    "starts delivered", "dropped (lagged)", "closed by server", "delivery p50 ms", "delivery p99 ms",
    "fan-out done after last ack, s (median)",
)


def table(scenarios: list[Scenario], args: argparse.Namespace) -> str:
    return markdown_table([column.format(runs=args.runs) for column in COLUMNS], (row(s, args) for s in scenarios))


def row(scenario: Scenario, args: argparse.Namespace) -> list[str]:
    post_ms = [ms for run in scenario.runs for ms in run.post_ms]
    cells = [
        str(scenario.subscribers),
        fmt_number(args.events),
        fmt_number(args.batch),
        fmt_number(statistics.median(run.rate for run in scenario.runs)),
        f"{fmt_ms(percentile(post_ms, 50))} / {fmt_ms(percentile(post_ms, 99))}",
    ]
    if not scenario.subscribers:
        return cells + ["—"] * (len(COLUMNS) - len(cells))
    histogram = Histogram()
    for delivery in scenario.deliveries:
        histogram.merge(Histogram(delivery.histogram))
    incomplete = sum(not delivery.complete for delivery in scenario.deliveries)
    delivered = fmt_number(sum(delivery.received for delivery in scenario.deliveries))
    return [
        *cells,
        delivered + (f" ({incomplete} waits timed out)" if incomplete else ""),
        fmt_number(sum(delivery.dropped for delivery in scenario.deliveries)),
        str(scenario.closed),
        _ms(histogram.percentile(50)),
        _ms(histogram.percentile(99)),
        f"{statistics.median(scenario.fanout_tail):.2f}",
    ]


def _ms(value: float | None) -> str:
    return "—" if value is None else fmt_ms(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="daemon base URL (default: %(default)s)")
    parser.add_argument("--subscribers", type=int, default=500, help="websocket clients, all countries (default: %(default)s)")
    parser.add_argument("--events", type=int, default=20_000, help="starts per run (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1_000, help="events per POST (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario, median reported (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2, help="processes holding the subscribers (default: %(default)s)")
    parser.add_argument("--delivery-timeout", type=float, default=300.0, help="wait limit per run, s (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2016, help="seed for the generated events (default: %(default)s)")


def register(subparsers: Any) -> None:
    """For `python -m bench fanout …`."""
    parser = subparsers.add_parser("fanout", help="live feed: delivery delay and ingest throughput with N subscribers")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if min(args.subscribers, args.events, args.batch, args.concurrency, args.runs, args.processes) < 1:
        raise BenchError("--subscribers, --events, --batch, --concurrency, --runs and --processes must be at least 1")
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
