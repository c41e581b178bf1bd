"""One quiet line, not an ERROR traceback, for requests aiohttp's parser refuses (oversized or malformed headers)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class QuietClientErrors(logging.Filter):
    """aiohttp answers a header over its 8,190-byte limit, more than 128 headers or a malformed request line
    with a 400 and closes the connection, which is right; but it logs each at ERROR with a traceback, so a
    hostile client could flood the log. A client's mistake is logged as one INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            reason = (error.message or "").strip().splitlines()[0][:120] if error.message else ""
            record.args = (record.getMessage(), error.code, reason)
            record.msg = "%s: %d %s"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    """Install the filter once (create_app calls this for every app; tests build many)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(existing, QuietClientErrors) for existing in logger.filters):
        logger.addFilter(QuietClientErrors())
