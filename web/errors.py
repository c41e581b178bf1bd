"""Every error leaves the server as JSON `{"error": "..."}` with the right status, never a bare 500 page."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from cassandra import OperationTimedOut, Timeout, Unavailable
from cassandra.cluster import NoHostAvailable

log = logging.getLogger(__name__)

# Datetimes leave as ISO-8601 UTC with a trailing Z, like `format_instant`; naive ones are the
# driver's, which are UTC.
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z

# The driver's ways of saying "Cassandra did not answer in time / has too few replicas up": the request may
# well work a moment later, so the client gets 503 + Retry-After (like ingest), not a 500.
STORAGE_UNAVAILABLE = (OperationTimedOut, NoHostAvailable, Unavailable, Timeout)
STORAGE_RETRY_AFTER = "1"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """orjson-encoded JSON response (UUIDs and datetimes encode natively)."""
    return web.Response(
        body=orjson.dumps(body, option=JSON_OPTIONS), status=status, content_type="application/json", headers=headers
    )


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTTP exceptions and unexpected failures into JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, reason, headers=_passthrough_headers(exc))
    except STORAGE_UNAVAILABLE as exc:
        log.warning("%s %s: Cassandra unavailable: %s: %s", request.method, request.path, type(exc).__name__, exc)
        reason = f"Cassandra unavailable ({type(exc).__name__}); try again shortly"
        return json_error(503, reason, headers={"Retry-After": STORAGE_RETRY_AFTER})
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal error; see the daemon's log")


def _passthrough_headers(exc: web.HTTPException) -> dict[str, str]:
    keep = ("Allow", "Retry-After")
    return {name: exc.headers[name] for name in keep if name in exc.headers}
