"""`python -m bench players`: a heavy player's last sessions against a light player's, optionally A/B against another checkout."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import common
from bench.ingest import post_one
from bench.queries import Measurement, Query, measure, warm_up
from daemon.core.instants import parse_instant

POST_BATCH = 10_000
REQUEST_TIMEOUT = 60.0
HISTORY_DAYS = 360  # the heavy player's sessions spread over the year, inside retention
OPEN_SESSIONS = 3  # the heavy player's newest sessions have no end yet
LIGHT_PLAYERS = 50


@dataclass(frozen=True, slots=True)
class PlayerOptions:
    sessions: int = 20_000
    light_sessions: int = 10
    concurrency: tuple[int, ...] = (1, 8)
    duration: float = 5.0
    rounds: int = 2
    warmup: int = 20
    seed: int = 2016
    baseline: Path | None = None  # another checkout (e.g. a worktree of main) measured in the same run
    keyspace: str = "bench_players"
    port: int = 18083
    results_dir: Path = common.RESULTS_DIR


@dataclass(slots=True)
class Dataset:
    heavy: str
    light: list[str]
    lines: list[bytes]
    expected: list[str]  # the heavy player's 20 newest complete session ids, by brute force


@dataclass(frozen=True, slots=True)
class Side:
    name: str  # "baseline" or "this"
    source: Path
    revision: str
    keyspace: str


@dataclass(slots=True)
class PlayerResult:
    command: str
    options: PlayerOptions
    machine: common.Machine
    sides: list[Side]
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)  # side name -> cells of all rounds

    def record(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "options": self.options,
            "machine": self.machine,
            "sides": self.sides,
            "measurements": {
                name: [
                    {
                        "round": item.phase,
                        "route": item.route,
                        "concurrency": item.concurrency,
                        "requests": item.requests,
                        "p50_ms": common.percentile(item.latencies_ms, 50),
                        "p99_ms": common.percentile(item.latencies_ms, 99),
                        "max_ms": max(item.latencies_ms, default=0.0),
                        "errors": item.errors,
                        "cpu_seconds": item.cpu,
                    }
                    for item in items
                ]
                for name, items in self.measurements.items()
            },
        }


def stamp(moment: dt.datetime) -> str:
    """Milliseconds, as stored: the brute-force order is then the service's order."""
    return moment.isoformat(timespec="milliseconds")


def sessions_of(player: str, count: int, rng: random.Random, now: dt.datetime) -> list[dict[str, Any]]:
    """`count` complete sessions spread evenly over HISTORY_DAYS before `now`, 5 to 60 minutes long."""
    step = HISTORY_DAYS * 86_400 / max(count, 1)
    events = []
    for index in range(count):
        begin = now - dt.timedelta(seconds=60 + index * step + rng.random() * step / 2)
        finish = begin + dt.timedelta(seconds=rng.randrange(300, 3_600))
        session = str(uuid.uuid4())
        events.append(
            {"event": "start", "player_id": player, "session_id": session, "ts": stamp(begin), "country": "FI"}
        )
        events.append({"event": "end", "player_id": player, "session_id": session, "ts": stamp(finish)})
    return events


def build_dataset(options: PlayerOptions) -> Dataset:
    """One heavy player (plus a few open sessions, newest of all) and light players, shuffled."""
    rng = random.Random(options.seed)
    now = parse_instant(common.DEMO_NOW).replace(tzinfo=None)
    heavy = uuid.UUID(int=rng.getrandbits(128)).hex
    events = sessions_of(heavy, options.sessions, rng, now)
    complete = sorted(
        ((event["ts"], uuid.UUID(event["session_id"])) for event in events if event["event"] == "start"), reverse=True
    )
    for minutes in range(OPEN_SESSIONS):
        start = now - dt.timedelta(minutes=minutes + 1)
        events.append(
            {"event": "start", "player_id": heavy, "session_id": str(uuid.uuid4()), "ts": stamp(start), "country": "FI"}
        )
    light = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(LIGHT_PLAYERS)]
    for player in light:
        events += sessions_of(player, options.light_sessions, rng, now)
    rng.shuffle(events)
    lines = [orjson.dumps(event) for event in events]
    return Dataset(heavy, light, lines, [str(session) for _, session in complete[:20]])


async def load(session: aiohttp.ClientSession, url: str, dataset: Dataset) -> float:
    """POST the dataset in batches; the seconds it took."""
    began = time.perf_counter()
    for offset in range(0, len(dataset.lines), POST_BATCH):
        accepted, _ = await post_one(
            session, f"{url}/v1/events", b"\n".join(dataset.lines[offset : offset + POST_BATCH])
        )
        if accepted is None:
            raise common.BenchError("the daemon kept answering 503 while loading")
    return time.perf_counter() - began


async def check_answer(session: aiohttp.ClientSession, url: str, dataset: Dataset, side: Side) -> None:
    """The heavy player's answer is the brute-force one, on both sides, before anything is timed."""
    async with session.get(f"{url}/v1/players/{dataset.heavy}/sessions") as response:
        body = await response.json()
    got = [item["session_id"] for item in body["sessions"]]
    if got != dataset.expected:
        raise common.BenchError(f"{side.name} ({side.revision}): the heavy player's answer is not the expected one")


def queries_for(dataset: Dataset) -> list[Query]:
    return [
        Query("/v1/players/{heavy}/sessions", True, lambda rng: f"/v1/players/{dataset.heavy}/sessions"),
        Query("/v1/players/{light}/sessions", False, lambda rng: f"/v1/players/{rng.choice(dataset.light)}/sessions"),
        Query("/complete_sessions/{heavy}", False, lambda rng: f"/complete_sessions/{dataset.heavy}"),
    ]


async def run_side(
    side: Side, round_index: int, dataset: Dataset, options: PlayerOptions, node_pid: int | None
) -> list[Measurement]:
    """One daemon of `side`'s checkout: load on the first round, then every route at every concurrency."""
    spec = common.DaemonSpec(
        side.keyspace, options.port, common.log_path(options.results_dir, f"players-{side.name}"), source=side.source
    )
    connections = max(options.concurrency)
    async with common.running_daemon(spec) as daemon, common.client_session(connections, REQUEST_TIMEOUT) as session:
        if round_index == 0:
            seconds = await load(session, spec.url, dataset)
            common.say(f"{side.name}: loaded {len(dataset.lines):,} events in {seconds:.1f} s")
        await check_answer(session, spec.url, dataset, side)
        meter = common.CpuMeter({"daemon": daemon.pid, "cassandra": node_pid})
        rng = random.Random(options.seed)
        cells = []
        for query in queries_for(dataset):
            await warm_up(session, spec.url, query, options.warmup, rng)
            for concurrency in options.concurrency:
                cell = await measure(
                    session, spec.url, query, concurrency, options.duration, rng, meter, f"round {round_index + 1}"
                )
                daemon.check_alive()
                common.say(
                    f"{side.name} {cell.phase} {query.route} x{concurrency}: p50 {common.fmt_ms(common.percentile(cell.latencies_ms, 50))} ms"
                )
                cells.append(cell)
        return cells


async def bench(options: PlayerOptions) -> PlayerResult:
    sides = [Side("this", common.REPO, common.git_revision(common.REPO), options.keyspace)]
    if options.baseline is not None:
        sides.insert(
            0, Side("baseline", options.baseline, common.git_revision(options.baseline), f"{options.keyspace}_base")
        )
    dataset = build_dataset(options)
    config = common.keyspace_config(options.keyspace)
    with common.keyspace_lock(options.keyspace):
        async with common.connected(config) as db:
            for side in sides:
                await common.ensure_schema(
                    db, config, side.keyspace
                )  # this checkout's schema: a superset of older ones
                await common.truncate(db, side.keyspace, common.DATA_TABLES)
            result = PlayerResult(common.command_line(), options, await common.describe_machine(db, config), sides)
    node_pid = common.cassandra_pid(config)
    for round_index in range(options.rounds):  # sides alternate, so drift in the machine's load hits both
        for side in sides:
            cells = await run_side(side, round_index, dataset, options, node_pid)
            result.measurements.setdefault(side.name, []).extend(cells)
    return result


HEADERS = (
    "revision",
    "route",
    "clients",
    "requests",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "daemon CPU ms/req",
    "p50 / light p50",
)


def report(result: PlayerResult) -> str:
    rows = []
    for side in result.sides:
        cells = result.measurements.get(side.name, [])
        light = {
            (cell.phase, cell.concurrency): common.percentile(cell.latencies_ms, 50)
            for cell in cells
            if cell.route == "/v1/players/{light}/sessions"
        }
        for cell in cells:
            cpu = cell.cpu.get("daemon", float("nan"))
            rows.append(
                [
                    f"{side.name} `{side.revision}`",
                    f"`{cell.route}` ({cell.phase})",
                    str(cell.concurrency),
                    common.fmt_number(cell.requests),
                    common.fmt_ms(common.percentile(cell.latencies_ms, 50)),
                    common.fmt_ms(common.percentile(cell.latencies_ms, 99)),
                    common.fmt_ms(max(cell.latencies_ms, default=float("nan"))),
                    str(cell.errors),
                    common.fmt_number(cpu * 1000 / cell.requests, 2) if cell.requests else "—",
                    common.fmt_ratio(
                        common.ratio(common.percentile(cell.latencies_ms, 50), light[(cell.phase, cell.concurrency)])
                    ),
                ]
            )
    options = result.options
    legend = (
        f"Heavy player: {options.sessions:,} complete sessions over {HISTORY_DAYS} days, its {OPEN_SESSIONS} newest "
        f"without an end; {LIGHT_PLAYERS} light players of {options.light_sessions} sessions each; all events shuffled "
        f"and posted in {POST_BATCH:,}-event requests. Each cell: {options.duration:g} s of closed-loop clients after "
        f"{options.warmup} warm-up requests; sides alternate over {options.rounds} rounds, each its own keyspace."
    )
    return "\n\n".join(
        [f"`{result.command}`", common.machine_markdown(result.machine), legend, common.markdown_table(HEADERS, rows)]
    )


def register(subparsers: Any) -> None:
    d = PlayerOptions()
    parser = subparsers.add_parser("players", help="a heavy player's last sessions against a light player's")
    parser.add_argument(
        "--sessions", type=int, default=d.sessions, help="the heavy player's sessions (default: %(default)s)"
    )
    parser.add_argument(
        "--light-sessions", type=int, default=d.light_sessions, help="each light player's (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=common.int_list, default=d.concurrency, help="concurrent clients (default: 1,8)"
    )
    parser.add_argument("--duration", type=float, default=d.duration, help="seconds per cell (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=d.rounds, help="rounds, sides alternating (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=d.warmup, help="unrecorded requests per route (default: %(default)s)"
    )
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure in the same run")
    parser.add_argument(
        "--keyspace", default=d.keyspace, help="bench keyspace (default: %(default)s; the baseline's gets _base)"
    )
    parser.add_argument("--port", type=int, default=d.port, help="port of the bench's daemons (default: %(default)s)")
    parser.add_argument("--results-dir", type=Path, default=d.results_dir, help="where the JSON result goes")
    parser.set_defaults(run=run)


def options_from(args: argparse.Namespace) -> PlayerOptions:
    options = PlayerOptions(
        sessions=args.sessions,
        light_sessions=args.light_sessions,
        concurrency=args.concurrency,
        duration=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
        baseline=args.baseline.resolve() if args.baseline else None,
        keyspace=args.keyspace,
        port=args.port,
        results_dir=args.results_dir,
    )
    if options.sessions < 20 or options.light_sessions < 1 or options.rounds < 1 or options.duration <= 0:
        raise common.BenchError(
            "--sessions must be at least 20, --light-sessions and --rounds at least 1, --duration positive"
        )
    if options.baseline is not None and not (options.baseline / "daemon").is_dir():
        raise common.BenchError(f"--baseline {options.baseline}: not a checkout of this project")
    common.check_keyspace(options.keyspace)
    return options


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    result = asyncio.run(bench(options))
    return common.publish("players", result, report(result), options.results_dir)
