"""`python -m bench cpu`: the daemon's own CPU per event on the ingest path, without the network.

Times the two CPU-bound steps of a request in this process — decoding and validating a JSON Lines
body, and turning the events into bound per-partition statements — under the interpreter's
default garbage-collector thresholds and under the daemon's tuned ones, and with the driver's
`PreparedStatement.bind` against the writer's own encoding. This is the profile-driven fix behind
the ingest numbers in BENCHMARKS.md, kept so anyone can rerun the before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from bench.common import bench_config, connected, markdown_table, median
from cql.binding import FastBinder, encode_int, encode_text, encode_timestamp, encode_uuid
from cql.writes import EventWriter
from daemon.core.events import Event
from daemon.core.instants import MS_PER_DAY
from daemon.core.intake import NDJSON, Rules, read_body
from daemon.tools.gen.model import GenOptions, generate

NOW_MS = 1_480_550_400_000  # the demo clock, 2016-12-01T00:00:00Z
DEFAULT_GC = (700, 10, 10)
TUNED_GC = (50_000, 20, 10)  # what `python -m daemon serve` sets (daemon/serve.py)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cpu", help="CPU per event of parsing and statement building")
    parser.add_argument("--events", type=int, default=100_000, help="events in the request (default 100,000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_measure(args.events, args.runs))


async def _measure(count: int, runs: int) -> int:
    body = "\n".join(generate(GenOptions(events=count))).encode()
    rules = Rules(now_ms=NOW_MS, retention_ms=365 * MS_PER_DAY, max_future_hours=24, max_events=count)
    config = bench_config()
    async with connected(config) as db:
        writer = await EventWriter.prepare(db)
        driver_bind, fast_bind = await _binders(db)
    events = read_body(body, NDJSON, rules).accepted
    rows = []
    for label, thresholds in (("default GC", DEFAULT_GC), ("tuned GC", TUNED_GC)):
        parse = _timed(runs, thresholds, lambda: read_body(body, NDJSON, rules))
        build = _timed(runs, thresholds, lambda: _build_all(writer, events))
        driver = _timed(runs, thresholds, lambda: driver_bind(events))
        fast = _timed(runs, thresholds, lambda: fast_bind(events))
        rows.append(
            [label, f"{parse:.2f}", f"{build:.2f}", f"{driver:.2f}", f"{fast:.2f}", f"{count / (parse + build):,.0f}"]
        )
    print(f"{count:,} events (generator default shape), median of {runs} runs, seconds of CPU in one process:\n")
    headers = [
        "GC thresholds",
        "decode + validate",
        "all statements (writer)",
        "1 upsert/event: driver bind()",
        "1 upsert/event: FastBinder",
        "events/s (decode + statements)",
    ]
    print(markdown_table(headers, rows))
    return 0


def _timed(runs: int, thresholds: tuple[int, int, int], work: Callable[[], object]) -> float:
    gc.set_threshold(*thresholds)
    samples = []
    for _ in range(runs):
        gc.collect()
        started = time.process_time()
        result = work()
        samples.append(time.process_time() - started)
        del result
    gc.set_threshold(*DEFAULT_GC)
    return median(samples)


def _build_all(writer: EventWriter, events: list[Event], flush: int = 5_000) -> list[object]:
    expiry = 365 * MS_PER_DAY
    return [writer.statements_for(events[i : i + flush], expiry, NOW_MS) for i in range(0, len(events), flush)]


UPSERT_TYPES = ("int", "timestamp", "text", "text", "uuid")


async def _binders(db: Any) -> tuple[Callable[[list[Event]], object], Callable[[list[Event]], object]]:
    """One upsert per event, bound by the driver's `bind()` (the baseline) and by FastBinder."""
    prepared = await db.prepare(
        f"UPDATE {db.keyspace}.sessions_by_player USING TTL ? SET start_ts = ?, country = ? "
        "WHERE player_id = ? AND session_id = ?"
    )
    fast = FastBinder(prepared, UPSERT_TYPES)

    def driver(events: list[Event]) -> object:
        return [prepared.bind((1000, e.ts_ms, e.country or "", e.player_id, e.session_id)) for e in events]

    def ours(events: list[Event]) -> object:
        ttl = encode_int(1000)
        return [
            fast.bind([ttl, encode_timestamp(e.ts_ms), encode_text(e.country or ""), encode_text(e.player_id),
                       encode_uuid(e.session_id)])
            for e in events
        ]

    return driver, ours
