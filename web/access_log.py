"""The access log (`serve --access-log`): one line per request with its id, route, status, time and API key id."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from web.keys import KEY_ID, REQUEST_ID
from web.observe import ROUTE, UNMATCHED_ROUTE, request_id_of

NO_KEY = "-"


class AccessLogger(AbstractAccessLogger):
    """Text: `POST /v1/events 200 0.012s key=ab12 id=…`; JSON (log.format): the same line as `message`, and each
    value as a field of its own.

    The path is logged without its query string (a websocket may carry its token there), and the key is its id,
    set by the auth check (KEY_ID): never a token or a secret.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # A request aiohttp answered before routing (a malformed one) has no id yet: it gets a fresh one here.
        request_id = request.get(REQUEST_ID) or request_id_of(request)
        key_id = request.get(KEY_ID) or NO_KEY
        fields = {
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "route": request.get(ROUTE, UNMATCHED_ROUTE),
            "status": response.status,
            "duration": round(time, 6),
            "remote": request.remote,
            "key_id": key_id,
            "bytes": response.body_length,
        }
        self.logger.info(
            "%s %s %d %.3fs key=%s id=%s",
            request.method,
            request.path,
            response.status,
            time,
            key_id,
            request_id,
            extra={"fields": fields},
        )


def access_logger() -> logging.Logger:
    return logging.getLogger("aiohttp.access")
