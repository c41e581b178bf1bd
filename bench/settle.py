"""`python -m bench settle`: after a shuffled backfill, how soon are the totals settled and exact?

A fresh daemon (default rollup settings) on emptied tables takes a generated, shuffled backfill
(NDJSON POSTs from a few clients). From the last acknowledgement on, the bench asks
`GET /v1/session-starts?hours=H` for each window in turn, every `--poll` seconds, and records when
each answer is first settled and equal to the starts posted in the window (counted from the posted
events, not from the service). Every answer is checked: a settled answer that is not exact is an
error, never a result.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    DATA_TABLES,
    RESULTS_DIR,
    BenchError,
    check_keyspace,
    connected,
    ensure_schema,
    fmt_ms,
    int_list,
    keyspace_config,
    keyspace_lock,
    log_path,
    markdown_table,
    p50_p99,
    publish,
    running_daemon,
    say,
    truncate,
)
from bench.common import DaemonSpec, client_session
from bench.ingest import POST_TIMEOUT, bodies_of, make_lines, post_batches
from daemon.core.instants import parse_instant

NOW = dt.datetime(2016, 12, 1, tzinfo=dt.UTC)  # the bench daemon's frozen clock (bench.common.DEMO_NOW)
GIVE_UP = 600.0  # seconds after the last acknowledgement


@dataclass(frozen=True, slots=True)
class SettleOptions:
    events: int = 100_000
    batch: int = 1_000
    clients: int = 4
    hours: tuple[int, ...] = (24, 720)
    poll: float = 0.1
    seed: int = 2016
    keyspace: str = "bench_settle"
    port: int = 8093
    results_dir: Path = RESULTS_DIR


@dataclass(slots=True)
class Window:
    hours: int
    expected: int  # starts posted inside the window
    settled_after: float | None = None  # seconds from the last acknowledgement
    first_settled: bool = False
    first_pending: int = 0
    unsettled_answers: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(slots=True)
class SettleResult:
    options: SettleOptions
    post_seconds: float
    accepted: int
    windows: list[Window]

    def record(self) -> dict[str, Any]:
        return {
            "options": asdict(self.options),
            "post_seconds": self.post_seconds,
            "accepted": self.accepted,
            "windows": [asdict(window) for window in self.windows],
        }


def expected_counts(lines: Sequence[bytes], hours: int) -> Counter[str]:
    """Starts per country in (now - hours, now] among the posted events (one per session and time)."""
    lower = NOW - dt.timedelta(hours=hours)
    seen: set[tuple[str, str]] = set()
    counts: Counter[str] = Counter()
    for line in lines:
        event = orjson.loads(line)
        if event.get("event") != "start" or (event["session_id"], event["ts"]) in seen:
            continue
        seen.add((event["session_id"], event["ts"]))
        if lower < parse_instant(event["ts"]) <= NOW:
            counts[event["country"]] += 1
    return counts


async def watch(
    session: aiohttp.ClientSession,
    url: str,
    windows: list[Window],
    truth: dict[int, Counter[str]],
    poll: float,
    acked: float,
) -> None:
    """Ask every window in turn until each has been settled and exact once."""
    first = True
    while any(window.settled_after is None for window in windows):
        for window in windows:
            began = time.perf_counter()
            async with session.get(f"{url}/v1/session-starts?hours={window.hours}") as response:
                body = await response.json()
            window.latencies_ms.append((time.perf_counter() - began) * 1000)
            exact = body["countries"] == dict(truth[window.hours])
            if body["settled"] and not exact:
                raise BenchError(f"hours={window.hours}: settled but {body['total']} != {window.expected}")
            if first:
                window.first_settled, window.first_pending = body["settled"], body["pending_periods"]
            if not body["settled"]:
                window.unsettled_answers += 1
            elif window.settled_after is None:
                window.settled_after = time.perf_counter() - acked
        first = False
        if time.perf_counter() - acked > GIVE_UP:
            raise BenchError(f"totals not settled {GIVE_UP:.0f}s after the last acknowledgement")
        await asyncio.sleep(poll)


async def bench(options: SettleOptions) -> SettleResult:
    config = keyspace_config(options.keyspace)
    say(f"generating {options.events:,} shuffled events")
    lines = make_lines(options.events, options.seed)
    truth = {hours: expected_counts(lines, hours) for hours in options.hours}
    windows = [Window(hours, sum(truth[hours].values())) for hours in options.hours]
    with keyspace_lock(options.keyspace):
        async with connected(config) as db:
            await ensure_schema(db, config, options.keyspace)
            await truncate(db, options.keyspace, (*DATA_TABLES, "rollup_marks"))
        spec = DaemonSpec(options.keyspace, options.port, log_path(options.results_dir, "settle"))
        async with running_daemon(spec) as daemon, client_session(options.clients, POST_TIMEOUT) as session:
            say(f"posting {len(lines):,} events in batches of {options.batch:,} from {options.clients} clients")
            posted = await post_batches(
                session, f"{spec.url}/v1/events", bodies_of(lines, options.batch), options.clients
            )
            acked = time.perf_counter()
            if posted.failed:
                raise BenchError(f"{posted.failed} batches were never acknowledged")
            say("waiting for settled totals")
            await watch(session, spec.url, windows, truth, options.poll, acked)
            daemon.check_alive()
    return SettleResult(options, posted.seconds, posted.accepted, windows)


def report(result: SettleResult) -> str:
    options = result.options
    rows = [
        [
            f"{window.hours:,} h",
            f"{window.expected:,}",
            "yes" if window.first_settled else f"no ({window.first_pending:,} pending)",
            f"{window.settled_after:.1f} s" if window.settled_after is not None else "never",
            f"{window.unsettled_answers:,}",
            p50_p99(window.latencies_ms),
        ]
        for window in result.windows
    ]
    headers = [
        "window",
        "starts in it",
        "first answer settled",
        "settled + exact after",
        "unsettled answers",
        "answer p50 / p99 ms",
    ]
    title = (
        f"{result.accepted:,} events acknowledged in {result.post_seconds:.1f} s "
        f"({options.batch:,}-event batches, {options.clients} clients); times from the last acknowledgement, "
        f"polled every {fmt_ms(options.poll * 1000)} ms"
    )
    return f"{title}\n\n{markdown_table(headers, rows)}"


def register(subparsers: Any) -> None:
    defaults = SettleOptions()
    parser = subparsers.add_parser("settle", help="time from the last acknowledged POST of a backfill to exact totals")
    parser.add_argument("--events", type=int, default=defaults.events, help="events to generate (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="events per POST (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="posting clients (default: %(default)s)")
    parser.add_argument("--hours", type=int_list, default=defaults.hours, help="windows asked for (default: 24,720)")
    parser.add_argument("--poll", type=float, default=defaults.poll, help="seconds between rounds of questions")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="generator seed (default: %(default)s)")
    parser.add_argument(
        "--keyspace", default=defaults.keyspace, help="bench keyspace, emptied first (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.port, help="port of the bench's daemon (default: %(default)s)"
    )
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir, help="where the JSON result goes")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_keyspace(args.keyspace)
    if args.events < 1 or args.batch < 1 or args.clients < 1:
        raise BenchError("--events, --batch and --clients must be at least 1")
    options = SettleOptions(
        args.events,
        args.batch,
        args.clients,
        tuple(args.hours),
        args.poll,
        args.seed,
        args.keyspace,
        args.port,
        args.results_dir,
    )
    result = asyncio.run(bench(options))
    return publish("settle", result, report(result), options.results_dir)
