"""Who may call which route: the scope each route needs, the bearer-token check and the per-key rate limits.

Once any API key exists, every route needs a key except the open ones below; a route not listed as open or
ingest needs a read key, so a new route is never left open by mistake.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from daemon.auth.access import Access, retry_after
from daemon.auth.keyring import Refusal
from daemon.auth.tokens import Scope
from web.errors import json_error
from web.keys import ACCESS

OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/", "/static/{filename}", "/openapi.json"})
INGEST_ROUTES = frozenset({"/v1/events", "/add/{n}"})
# Browsers cannot set headers on a websocket, so the feed also takes `?token=` (never logged: see web.accesslog).
TOKEN_PARAM_ROUTES = frozenset({"/v1/live"})
KEY_ID: web.RequestKey[str | None] = web.RequestKey("key_id")
"""request[KEY_ID]: the id of the key that authorised the request (None when anonymous), for logs."""


def route_scope(request: web.Request) -> Scope | None:
    """The scope the matched route needs; None for open routes and for requests that matched no route (404)."""
    resource = request.match_info.route.resource
    if resource is None or resource.canonical in OPEN_ROUTES:
        return None
    return Scope.INGEST if resource.canonical in INGEST_ROUTES else Scope.READ


def presented_token(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical in TOKEN_PARAM_ROUTES:
        return request.query.get("token")
    return None


@web.middleware
async def require_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = route_scope(request)
    if scope is None:
        return await handler(request)
    access = request.app[ACCESS]
    verdict = access.ring.check(presented_token(request), scope)
    if isinstance(verdict, Refusal):
        headers = {"WWW-Authenticate": 'Bearer realm="player-session-service"'} if verdict.status == 401 else None
        return json_error(verdict.status, verdict.reason, headers=headers)
    request[KEY_ID] = verdict.key_id
    if verdict.key_id is not None:
        refused = _over_limit(access, scope, verdict.key_id)
        if refused is not None:
            return refused
    return await handler(request)


def _over_limit(access: Access, scope: Scope, key_id: str) -> web.Response | None:
    """A read costs one request; an ingest request may start while its key's bucket is not empty (its
    events are charged by `charge_events` once the body is parsed)."""
    limits = access.reads if scope is Scope.READ else access.ingest
    bucket = limits.bucket(key_id)
    if bucket is None:
        return None
    wait = bucket.take(1) if scope is Scope.READ else bucket.wait_for_any()
    return too_many(key_id, wait) if wait else None


def charge_events(request: web.Request, events: int) -> web.Response | None:
    """Take `events` from the ingest key's bucket; the 429 to answer (nothing stored) when it cannot."""
    key_id = request.get(KEY_ID)
    bucket = request.app[ACCESS].ingest.bucket(key_id) if key_id else None
    wait = bucket.take(events) if bucket is not None else 0.0
    return too_many(key_id, wait, f"{events} events") if wait else None


def too_many(key_id: str | None, wait: float, what: str = "requests") -> web.Response:
    return json_error(
        429,
        f"rate limit of API key {key_id} exceeded ({what}); retry after {wait:.1f} s",
        headers={"Retry-After": retry_after(wait)},
    )
