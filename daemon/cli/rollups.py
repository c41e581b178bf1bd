"""`python -m daemon rollups rebuild --since … --until …`: recount the start totals of a time range."""

from __future__ import annotations

import argparse
import asyncio

from daemon.cli.commands import Subparsers, add_command
from daemon.core.clock import Clock
from daemon.core.config import Config
from daemon.core.errors import CommandError
from daemon.core.instants import MS_PER_MINUTE, datetime_to_ms, parse_instant
from daemon.core.intake import Rules


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "rollups", "recount the per-country session-start totals")
    parser.add_argument("action", choices=("rebuild",), help="rebuild: recount every minute in the range")
    parser.add_argument("--since", default=None, help="ISO-8601 start (default: retention before now)")
    parser.add_argument("--until", default=None, help="ISO-8601 end (default: now + ingest.max_future_hours)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    clock = Clock.from_setting(config.clock.now)
    # By default, every minute an event the service accepts today can fall in.
    accepted = Rules.of(config.ingest, clock.now_ms())
    try:
        since = datetime_to_ms(parse_instant(args.since)) if args.since else accepted.oldest_ms
        until = datetime_to_ms(parse_instant(args.until)) if args.until else accepted.newest_ms
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if until <= since:
        raise CommandError("--until must be after --since")
    minutes = asyncio.run(_rebuild(config, clock, since // MS_PER_MINUTE, until // MS_PER_MINUTE + 1))
    print(f"recounted {minutes} minutes and the hours, days and months above them")
    return 0


async def _rebuild(config: Config, clock: Clock, first_minute: int, end_minute: int) -> int:
    from cql.driver import Database
    from cql.pending import PendingMarks
    from cql.rollups import RollupStore
    from daemon.rollups.refresher import RollupRefresher

    db = await Database.connect(config.cassandra)
    try:
        store, marks = await RollupStore.prepare(db), await PendingMarks.prepare(db)
        refresher = RollupRefresher(store, config.rollups, clock, config.ingest.retention_ms, marks)
        refresher.mark_range(first_minute, end_minute)
        await refresher.refresh(everything=True)
    finally:
        await db.close()
    return end_minute - first_minute
