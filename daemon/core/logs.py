"""Log records as text or as one JSON object per line, with the fields of the request being served."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The request a task is serving (request_id, method, path): set by the web layer around each handler, so every
# record logged while serving it carries them, whichever module logs.
_request_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("request_fields", default=None)


@contextmanager
def request_context(fields: Mapping[str, Any]) -> Iterator[None]:
    """Records logged inside carry `fields` (in the JSON format)."""
    token = _request_fields.set(fields)
    try:
        yield
    finally:
        _request_fields.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the request's fields, a record's own `fields`
    (passed as `extra={"fields": {...}}`, as the access log does), and exc for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_request_fields.get() or {})
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an odd value in a record's fields must not lose the line.
        return orjson.dumps(entry, default=str).decode()


def log_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to `stream` (stderr) in `log_format`: "text" or "json" (log.format)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return handler
