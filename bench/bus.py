"""Live bus benchmark: starts POSTed to replica A reach websocket subscribers of replica B through Redis.

    python -m bench bus --subscribers 100 --events 2000 --batch 50

Starts a redis-server with the bus tool (`bench/results/redis`, `--redis-port`) and two daemons
on one keyspace and one stream, then measures with the fan-out benchmark's subscribers and
method (bench/fanout.py): POSTs always go to A; the subscribers sit on B (across replicas), then
on A (the same replica, through the stream too); with `--baseline`, also on one daemon without a
bus (the local feed). Delays are per start a sampled subscriber received: after the
acknowledgement of the POST that carried it, and after its send.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.common import (
    RESULTS_DIR,
    BenchError,
    CpuMeter,
    DaemonSpec,
    cassandra_pid,
    check_keyspace,
    connected,
    ensure_schema,
    fmt_number,
    keyspace_config,
    keyspace_lock,
    log_path,
    markdown_table,
    p50_p99,
    running_daemon,
    say,
)
from bench.fanout import Posting, Scenario, Workers, check_counts, check_daemon, plan_subscriptions
from bench.subscribers import expected_starts
from daemon.core.config import BusConfig
from daemon.tools.bus.process import running_pid
from daemon.tools.bus.server import BusPaths, bus_url, start_bus, stop_bus


@dataclass
class Measured:
    name: str
    scenario: Scenario


async def bench(args: argparse.Namespace) -> list[Measured]:
    check_keyspace(args.keyspace)
    config = keyspace_config(args.keyspace)
    bus = BusConfig(dir=str(RESULTS_DIR / "redis"), port=args.redis_port)
    started = start_bus(bus, say=say)
    paths = BusPaths.of(bus)
    try:
        with keyspace_lock(args.keyspace):
            async with connected(config) as db:
                await ensure_schema(db, config, args.keyspace)
            return await measure_all(args, bus, running_pid(paths.pid_file, paths.root), cassandra_pid(config))
    finally:
        if not started.reused:
            stop_bus(bus, say=say)


async def measure_all(args: argparse.Namespace, bus: BusConfig, redis: int | None, node: int | None) -> list[Measured]:
    live = {"PSS_LIVE_FAN_OUT_INTERVAL": str(args.fan_out_interval)}
    on_bus = {**live, "PSS_LIVE_BUS": bus_url(bus), "PSS_LIVE_BUS_STREAM": f"bench:{os.getpid()}"}
    results: list[Measured] = []
    if args.baseline:
        spec = DaemonSpec(args.keyspace, args.port, log_path(RESULTS_DIR, "bus-baseline"), live)
        async with running_daemon(spec) as solo:
            meter = CpuMeter({"A": solo.pid, "cassandra": node})
            results.append(Measured("one daemon, no bus", await measure(spec.url, spec.url, args, meter)))
    spec_a = DaemonSpec(args.keyspace, args.port, log_path(RESULTS_DIR, "bus-a"), on_bus)
    spec_b = DaemonSpec(args.keyspace, args.port + 1, log_path(RESULTS_DIR, "bus-b"), on_bus)
    async with running_daemon(spec_a) as a, running_daemon(spec_b) as b:
        meter = CpuMeter({"A": a.pid, "B": b.pid, "redis": redis, "cassandra": node})
        results.append(Measured("POST to A, subscribers on B", await measure(spec_a.url, spec_b.url, args, meter)))
        results.append(Measured("POST to A, subscribers on A", await measure(spec_a.url, spec_a.url, args, meter)))
    return results


async def measure(post_url: str, live_url: str, args: argparse.Namespace, meter: CpuMeter) -> Scenario:
    """`--runs` runs: subscribers on `live_url` armed, every start POSTed to `post_url`, all accounted for."""
    scenario = Scenario(args.subscribers)
    subscriptions = plan_subscriptions(random.Random(args.seed), args.subscribers, 0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await check_daemon(session, post_url)
        posting = Posting(session, post_url, args)
        workers = Workers(f"{live_url.replace('http', 'ws', 1)}/v1/live", subscriptions, args.sampled, args.processes)
        try:
            connected = await workers.ready()
            for run in range(args.runs):
                batches = posting.plan()
                by_country = Counter(country for batch in batches for _, country, _ in batch)
                scenario.expected += sum(expected_starts(countries, by_country) for countries in subscriptions)
                await workers.arm(by_country, args.delivery_timeout)
                meter.start()
                posted = await posting.post(batches)
                deliveries = await workers.results()
                scenario.cpu.append(meter.stop())
                scenario.runs.append(posted)
                scenario.deliveries.extend(deliveries)
                scenario.add_delays(deliveries, posted.acks)
                say(f"  {connected} subscribers on {live_url}, run {run + 1}: {posted.rate:,.0f} events/s")
        finally:
            await workers.stop()
    return scenario


COLUMNS = (
    "scenario", "subscribers", "starts/run × runs", "batch", "starts delivered", "dropped (lagged)",
    "delivery after ack p50 / p99 ms", "delivery after send p50 / p99 ms", "CPU s/run",
)


def table(results: list[Measured], args: argparse.Namespace) -> str:
    rows = []
    for measured in results:
        scenario = measured.scenario
        received = sum(delivery.received for delivery in scenario.deliveries)
        incomplete = sum(not delivery.complete for delivery in scenario.deliveries)
        rows.append([
            measured.name,
            str(scenario.subscribers),
            f"{fmt_number(args.events)} × {args.runs}",
            str(args.batch),
            f"{fmt_number(received)} of {fmt_number(scenario.expected)}" + (" (timed out)" if incomplete else ""),
            fmt_number(sum(delivery.dropped for delivery in scenario.deliveries)),
            p50_p99(scenario.after_ack_ms),
            p50_p99(scenario.after_send_ms),
            _cpu(scenario.cpu),
        ])
    return markdown_table(COLUMNS, rows)


def _cpu(runs: Sequence[Mapping[str, float]]) -> str:
    names = list(runs[0]) if runs else []
    return ", ".join(f"{name} {sum(run[name] for run in runs) / len(runs):.1f}" for name in names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("--keyspace", default="bench_bus", help="keyspace of the bench's daemons (default: %(default)s)")
    arg("--port", type=int, default=18094, help="port of daemon A; B uses the next (default: %(default)s)")
    arg("--redis-port", type=int, default=6392, help="port of the bench's redis-server (default: %(default)s)")
    arg("--fan-out-interval", type=float, default=0.05, help="live.fan_out_interval, s (default: %(default)s)")
    arg("--subscribers", type=int, default=100, help="websocket clients (default: %(default)s)")
    arg("--events", type=int, default=2_000, help="starts per run (default: %(default)s)")
    arg("--batch", type=int, default=50, help="starts per POST (default: %(default)s)")
    arg("--concurrency", type=int, default=1, help="POSTs in flight (default: %(default)s)")
    arg("--runs", type=int, default=3, help="runs per scenario (default: %(default)s)")
    arg("--sampled", type=int, default=10, help="subscribers that time every start (default: %(default)s)")
    arg("--processes", type=int, default=1, help="processes of counting subscribers (default: %(default)s)")
    arg("--delivery-timeout", type=float, default=120.0, help="wait limit per run, s (default: %(default)s)")
    arg("--baseline", action="store_true", help="first measure one daemon without a bus (the local feed)")
    arg("--seed", type=int, default=2016, help="seed for the generated events (default: %(default)s)")


def register(subparsers: Any) -> None:
    """For `python -m bench bus …`."""
    parser = subparsers.add_parser("bus", help="live bus: cross-replica delivery delay through Redis")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_counts(args)
    args.sampled = min(args.sampled, args.subscribers)
    began = time.perf_counter()
    print(table(asyncio.run(bench(args)), args))
    say(f"done in {time.perf_counter() - began:.0f}s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
