"""Query routes go first: while one is answered, ingest keeps fewer writes in flight (daemon/ingest/priority.py)."""

from __future__ import annotations

import functools

from aiohttp import web
from aiohttp.typedefs import Handler

from web.keys import READ_PRIORITY


def answered_first(handler: Handler) -> Handler:
    """`handler`, counted as a query being answered for as long as it runs."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        with request.app[READ_PRIORITY].answering():
            return await handler(request)

    return answer
