"""`python -m daemon keys create|list|revoke`: the API keys every replica accepts (stored in Cassandra)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from daemon.auth.tokens import Scope, Token
from daemon.cli.commands import Subparsers, add_command
from daemon.core.config import Config
from daemon.core.errors import CommandError

if TYPE_CHECKING:
    from cql.apikeys import ApiKeyStore

T = TypeVar("T")


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "keys", "create, list and revoke API keys")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its token once")
    create.add_argument("--scope", required=True, choices=[scope.value for scope in Scope])
    create.add_argument("--name", default="", help="what the key is for (shown by `keys list`)")
    actions.add_parser("list", help="list keys (ids, scopes, names; never secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key on every replica (within auth.refresh seconds)")
    revoke.add_argument("key_id", metavar="ID")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    if args.action == "create":
        token = Token.mint(Scope(args.scope))
        _with_store(config, lambda store: store.create(token.key_id, token.scope.value, args.name, token.digest))
        print(f"created {token.scope.value} key {token.key_id}; its token (shown only now):")
        print(token)
    elif args.action == "list":
        keys = _with_store(config, lambda store: store.all())
        print(f"{'ID':<16}  {'SCOPE':<6}  {'CREATED':<20}  {'STATE':<27}  NAME")
        for key in sorted(keys, key=lambda key: key.created_at):
            state = f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "active"
            print(f"{key.key_id:<16}  {key.scope:<6}  {key.created_at:%Y-%m-%dT%H:%M:%SZ}  {state:<27}  {key.name}")
    else:
        if not _with_store(config, lambda store: store.revoke(args.key_id)):
            raise CommandError(f"no key with id {args.key_id!r} (see `python -m daemon keys list`)")
        print(f"revoked {args.key_id}; every replica refuses it within {config.auth.refresh:g} s")
    return 0


def _with_store(config: Config, use: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    async def session() -> T:
        from cassandra.cluster import NoHostAvailable

        from cql.apikeys import ApiKeyStore
        from cql.driver import Database

        try:
            db = await Database.connect(config.cassandra)
        except NoHostAvailable as exc:
            raise CommandError(f"cannot reach Cassandra: {exc}") from None
        try:
            return await use(ApiKeyStore(db))
        finally:
            await db.close()

    return asyncio.run(session())
