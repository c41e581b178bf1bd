"""`python -m daemon schema apply|show`: create the keyspace and tables, or print their CQL."""

from __future__ import annotations

import argparse
import asyncio

from daemon.cli.commands import Subparsers, add_command
from daemon.core.config import Config
from daemon.core.errors import CommandError


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "schema", "apply or show the Cassandra schema")
    parser.add_argument("action", choices=("apply", "show"), help="apply: create what is missing; show: print CQL")
    parser.add_argument("--keyspace", default=None, help="keyspace to use instead of cassandra.keyspace")
    parser.add_argument(
        "--reindex",
        action="store_true",
        help="apply: fill the player start index from the stored sessions again (after older replicas stopped)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    from cql.schema import render_schema

    if args.action == "show":
        for statement in render_schema(config.cassandra, args.keyspace):
            print(f"{statement};\n")
        return 0
    return asyncio.run(_apply(config, args.keyspace, args.reindex))


async def _apply(config: Config, keyspace: str | None, reindex: bool) -> int:
    from cassandra.cluster import NoHostAvailable

    from cql.driver import Database
    from cql.schema import apply_schema

    try:
        db = await Database.connect(config.cassandra)
    except NoHostAvailable as exc:
        hosts = ", ".join(config.cassandra.contact_points)
        raise CommandError(f"cannot reach Cassandra at {hosts}:{config.cassandra.port}: {exc}") from None
    try:
        statements = await apply_schema(db, config.cassandra, keyspace, reindex)
    finally:
        await db.close()
    print(f"schema applied to keyspace {keyspace or config.cassandra.keyspace} ({len(statements)} statements)")
    return 0
