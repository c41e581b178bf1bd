"""POST /v1/events: validate a batch, hand it to the actors, answer once Cassandra has it all."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from daemon.core.intake import CONTENT_TYPES, BodyError, Intake, Rules, read_body
from daemon.ingest.admission import Overloaded
from daemon.ingest.errors import ShuttingDown, StorageUnavailable
from web.auth import charge_events
from web.errors import json_error, json_response
from web.keys import CLOCK, CONFIG, PIPELINE

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying: a saturated daemon already made it wait
# `queue_wait`, while a Cassandra hiccup is usually over quickly.
RETRY_AFTER_OVERLOADED = "5"
RETRY_AFTER_UNAVAILABLE = "1"
PARSE_IN_THREAD_BYTES = 1 << 20
CONTENT_CODINGS = ("identity", "gzip", "deflate", "br", "zstd")


async def post_events(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG].ingest
    if request.content_type not in CONTENT_TYPES:
        return json_error(415, f"content type must be one of {', '.join(CONTENT_TYPES)}")
    body = await read_request_body(request, config.max_body_bytes)
    if isinstance(body, web.StreamResponse):
        return body
    rules = Rules.of(config, request.app[CLOCK].now_ms())
    try:
        if len(body) > PARSE_IN_THREAD_BYTES:
            # Decoding 100,000 events holds the CPU for most of a second; in a worker thread the
            # event loop still gets its turn every few milliseconds (the GIL's switch interval),
            # so queries and websockets served by this process are not stalled behind it.
            intake = await asyncio.to_thread(read_body, body, request.content_type, rules)
        else:
            intake = read_body(body, request.content_type, rules)
    except BodyError as exc:
        return json_error(exc.status, str(exc))
    return charge_events(request, intake.received) or await store_intake(request.app, intake)


async def store_intake(app: web.Application, intake: Intake) -> web.Response:
    """Wait for the accepted events to be durable; 200, or 400 when some were rejected; 503 if not stored."""
    try:
        await app[PIPELINE].submit(intake.accepted)
    except Overloaded:
        return _unavailable("ingest queues are full; retry shortly", RETRY_AFTER_OVERLOADED)
    except StorageUnavailable as exc:
        log.warning("ingest: %d events not stored: %s", len(intake.accepted), exc)
        return _unavailable(f"Cassandra did not acknowledge the writes: {exc}", RETRY_AFTER_UNAVAILABLE)
    except ShuttingDown as exc:
        return _unavailable(str(exc), RETRY_AFTER_UNAVAILABLE)
    return json_response(intake.summary(), status=400 if intake.rejected else 200)


def _unavailable(reason: str, retry_after: str) -> web.Response:
    return json_error(503, reason, headers={"Retry-After": retry_after})


async def read_request_body(request: web.Request, limit: int) -> bytes | web.StreamResponse:
    """The decompressed body, or the answer to give when there is none to use.

    aiohttp inflates the codings it knows (with the brotli and backports.zstd packages installed,
    all of CONTENT_CODINGS) and stops at `client_max_size`; any other coding reaches us raw and is
    refused here. A body that cannot be decoded leaves the rest of it unread on the connection,
    so that answer closes the connection: the client's next request gets a fresh one instead of
    a reset. A client that goes away mid-body is not a server error: one quiet line.
    """
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in CONTENT_CODINGS:
        supported = ", ".join(CONTENT_CODINGS)
        answer = json_error(415, f"Content-Encoding {coding!r} is not supported; use one of {supported}")
        answer.force_close()
        return answer
    server = request.app[CONFIG].server
    try:
        return await read_at_rate(request, limit, server.min_body_rate, server.body_grace)
    except TimeoutError:
        answer = json_error(
            408, f"body: arrived slower than {server.min_body_rate} bytes/s (after {server.body_grace:g} s)"
        )
        answer.force_close()
        return answer
    except web.RequestPayloadError:
        answer = json_error(400, f"body: cannot be decoded as {coding}")
        answer.force_close()
        return answer
    except ConnectionResetError:
        log.info("ingest: client %s left before its body was complete", request.remote)
        return web.Response(status=499)  # never sent: the connection is gone (nginx's "client closed request")


async def read_at_rate(request: web.Request, limit: int, min_rate: int, grace: float) -> bytes:
    """The whole (decompressed) body, as long as it keeps arriving at `min_rate` bytes/s on average after
    `grace` seconds; else TimeoutError. A client trickling a byte a second would otherwise hold its connection
    and buffer for as long as it likes. 413 past `limit` bytes."""
    body = bytearray()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        deadline = started + grace + len(body) / min_rate if min_rate else None
        async with asyncio.timeout_at(deadline):
            chunk = await request.content.readany()
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit, actual_size=request.content_length or len(body),
                text=f"body: larger than {limit} bytes after decompression",
            )


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_events)
