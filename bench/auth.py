"""`python -m bench auth`: what API keys cost (the key check and the rate-limit buckets), A/B in one run.

Two keyspaces with the same data path: one without keys (anonymous, as `make run` serves), one with a key of
each scope, whose daemon checks every request and charges every key's bucket (limits set far above the bench's
rate, so the buckets run but never refuse). Rounds alternate which side goes first; each side posts the same
events (ingest events/s) and then answers closed-loop reads (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import common
from bench.ingest import bodies_of, make_lines, post_batches
from bench.queries import timed_get
from cql.apikeys import ApiKeyStore
from cql.driver import Database
from daemon.auth.tokens import Scope, Token

POST_TIMEOUT = 300.0
KEYED_ENV = {
    "PSS_AUTH_INGEST_EVENTS_PER_SECOND": "1e12",
    "PSS_AUTH_INGEST_BURST_EVENTS": "1000000000",
    "PSS_AUTH_READ_REQUESTS_PER_SECOND": "1e12",
    "PSS_AUTH_READ_BURST_REQUESTS": "1000000000",
}
SIDES = ("anonymous", "keyed")


@dataclass(frozen=True, slots=True)
class AuthOptions:
    events: int = 50_000
    batch: int = 10_000
    rounds: int = 3
    duration: float = 5.0
    concurrency: int = 8
    seed: int = 2016
    port: int = 18083
    results_dir: Path = common.RESULTS_DIR


@dataclass(slots=True)
class SideRuns:
    events_per_s: list[float] = field(default_factory=list)
    read_p50_ms: list[float] = field(default_factory=list)
    read_p99_ms: list[float] = field(default_factory=list)
    reads_per_s: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass(slots=True)
class AuthResult:
    command: str
    options: AuthOptions
    machine: common.Machine
    sides: dict[str, SideRuns]

    def record(self) -> dict[str, Any]:
        return {"command": self.command, "options": self.options, "machine": self.machine, "sides": self.sides}


@asynccontextmanager
async def side_keyspace(db: Database, config_keyspace: str, keyed: bool) -> AsyncIterator[dict[Scope, str]]:
    """The side's keyspace with its keys (none when anonymous); keys are removed afterwards."""
    store = ApiKeyStore(db)
    await db.execute(f"TRUNCATE {config_keyspace}.api_keys")
    tokens: dict[Scope, str] = {}
    if keyed:
        for scope in Scope:
            token = Token.mint(scope)
            await store.create(token.key_id, scope.value, "bench auth", token.digest)
            tokens[scope] = str(token)
    try:
        yield tokens
    finally:
        await db.execute(f"TRUNCATE {config_keyspace}.api_keys")


def bearer(tokens: Mapping[Scope, str], scope: Scope) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {tokens[scope]}"} if scope in tokens else None


async def read_phase(
    url: str, paths: Sequence[str], options: AuthOptions, headers: dict[str, str] | None
) -> tuple[list[float], int, float]:
    """`concurrency` closed-loop clients for `duration` s over `paths`; latencies, errors, seconds."""
    latencies: list[float] = []
    errors = 0
    rng = random.Random(options.seed)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.duration
    async with common.client_session(options.concurrency, 30.0, headers) as session:
        for path in paths[:20]:  # warm-up: prepared statements and connections
            await timed_get(session, url + path)

        async def client() -> None:
            nonlocal errors
            while loop.time() < deadline:
                ms, _, ok = await timed_get(session, url + rng.choice(paths))
                latencies.append(ms)
                errors += not ok

        began = loop.time()
        async with asyncio.TaskGroup() as group:
            for _ in range(options.concurrency):
                group.create_task(client())
        return latencies, errors, loop.time() - began


async def run_side(
    db: Database, side: str, bodies: Sequence[bytes], paths: Sequence[str], options: AuthOptions, runs: SideRuns
) -> None:
    keyspace = f"bench_auth_{side}"
    await common.ensure_schema(db, common.keyspace_config(keyspace), keyspace)
    await common.truncate(db, keyspace, common.DATA_TABLES)
    async with side_keyspace(db, keyspace, side == "keyed") as tokens:
        env = KEYED_ENV if tokens else {}
        spec = common.DaemonSpec(keyspace, options.port, common.log_path(options.results_dir, f"auth-{side}"), env)
        async with common.running_daemon(spec) as daemon:
            async with common.client_session(1, POST_TIMEOUT, bearer(tokens, Scope.INGEST)) as session:
                posted = await post_batches(session, f"{spec.url}/v1/events", bodies, 1)
            daemon.check_alive()
            if posted.accepted != options.events:
                raise common.BenchError(f"{side}: {posted.accepted:,} of {options.events:,} events acknowledged")
            latencies, errors, seconds = await read_phase(spec.url, paths, options, bearer(tokens, Scope.READ))
            daemon.check_alive()
    runs.events_per_s.append(posted.accepted / posted.seconds)
    runs.read_p50_ms.append(common.percentile(latencies, 50))
    runs.read_p99_ms.append(common.percentile(latencies, 99))
    runs.reads_per_s.append(len(latencies) / seconds)
    runs.errors += errors
    common.say(
        f"{side}: {runs.events_per_s[-1]:,.0f} events/s; reads p50 {runs.read_p50_ms[-1]:.1f} ms, "
        f"p99 {runs.read_p99_ms[-1]:.1f} ms, {runs.reads_per_s[-1]:,.0f}/s"
    )


def read_paths(lines: Sequence[bytes]) -> list[str]:
    """The reads timed: totals of a day and of a month, and the sessions of players in the data."""
    players = sorted({orjson.loads(line)["player_id"] for line in lines[:2000]})
    return ["/v1/session-starts?hours=24", "/v1/session-starts?hours=720"] + [
        f"/v1/players/{player}/sessions" for player in players[:200]
    ]


async def bench(options: AuthOptions) -> AuthResult:
    lines = make_lines(options.events, options.seed)
    bodies, paths = bodies_of(lines, options.batch), read_paths(lines)
    config = common.bench_config()
    sides = {side: SideRuns() for side in SIDES}
    async with common.connected(config) as db:
        machine = await common.describe_machine(db, config)
        for round_number in range(options.rounds):
            order = SIDES if round_number % 2 == 0 else SIDES[::-1]
            for side in order:
                await run_side(db, side, bodies, paths, options, sides[side])
    return AuthResult(common.command_line(), options, machine, sides)


def report(result: AuthResult) -> str:
    base, keyed = result.sides["anonymous"], result.sides["keyed"]
    rows = []
    for name, pick in (
        ("ingest events/s", lambda runs: runs.events_per_s),
        (f"reads p50 ms ({result.options.concurrency} clients)", lambda runs: runs.read_p50_ms),
        (f"reads p99 ms ({result.options.concurrency} clients)", lambda runs: runs.read_p99_ms),
        ("reads/s", lambda runs: runs.reads_per_s),
    ):
        a, b = common.median(pick(base)), common.median(pick(keyed))
        rows.append([name, f"{a:,.1f}", f"{b:,.1f}", common.fmt_ratio(common.ratio(b, a))])
    table = common.markdown_table(["median over rounds", "anonymous", "with keys", "keys / anonymous"], rows)
    return "\n".join(
        [common.machine_markdown(result.machine), "", table, "", f"read errors: {base.errors} / {keyed.errors}"]
    )


def register(subparsers: Any) -> None:
    d = AuthOptions()
    parser = subparsers.add_parser("auth", help="the cost of API keys on ingest and reads, A/B in one run")
    parser.add_argument(
        "--events", type=int, default=d.events, help="events posted per side and round (default: %(default)s)"
    )
    parser.add_argument("--batch", type=int, default=d.batch, help="events per POST (default: %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=d.rounds, help="rounds, sides alternating first (default: %(default)s)"
    )
    parser.add_argument(
        "--duration", type=float, default=d.duration, help="seconds of reads per side and round (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=d.concurrency, help="closed-loop read clients (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=d.port, help="port of the bench's daemon (default: %(default)s)")
    parser.add_argument(
        "--results-dir", type=Path, default=d.results_dir, help="where the JSON result goes (default: bench/results)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = AuthOptions(
        events=args.events,
        batch=args.batch,
        rounds=args.rounds,
        duration=args.duration,
        concurrency=args.concurrency,
        port=args.port,
        results_dir=args.results_dir,
    )
    result = asyncio.run(bench(options))
    return common.publish("auth", result, report(result), options.results_dir)
