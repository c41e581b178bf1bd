"""Query-string and path parameter parsing with 400 answers that say what was wrong."""

from __future__ import annotations

import base64
import binascii
import math
import uuid

from aiohttp import web

from cql.reads import StartPosition
from daemon.core.events import COUNTRY_CODE, COUNTRY_REQUIRED_FORM, is_country_code
from daemon.core.instants import MS_PER_HOUR

MAX_HOURS = 8760


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message)


def country_param(value: str) -> str:
    if not is_country_code(value):
        raise bad_request(COUNTRY_REQUIRED_FORM)
    return value


def countries_param(request: web.Request) -> list[str] | None:
    """`?countries=FI,EE` (repeatable), in the order given without repeats; absent means every country."""
    values = request.query.getall("countries", [])
    if not values:
        return None
    codes = [part.strip() for value in values for part in value.split(",")]
    for code in codes:
        if not is_country_code(code):
            raise bad_request(
                f"countries: {code!r} is not a country code; expected {COUNTRY_CODE}, comma separated "
                "(omit the parameter for all countries)"
            )
    return list(dict.fromkeys(codes))


def int_param(request: web.Request, name: str, minimum: int, maximum: int) -> int | None:
    """An optional integer parameter within minimum..maximum."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name}: not an integer: {raw!r}") from None
    if not minimum <= value <= maximum:
        raise bad_request(f"{name}: must be {minimum}..{maximum}")
    return value


def hours_param(request: web.Request) -> float:
    """`hours`: a positive number of hours, decimals allowed, at most a year."""
    raw = request.query.get("hours")
    if raw is None:
        raise bad_request("hours: required")
    try:
        hours = float(raw)
    except ValueError:
        raise bad_request(f"hours: not a number: {raw!r}") from None
    if not math.isfinite(hours) or hours <= 0 or hours > MAX_HOURS:
        raise bad_request(f"hours: must be greater than 0 and at most {MAX_HOURS}")
    return hours


def limit_param(request: web.Request, default: int, maximum: int) -> int:
    limit = int_param(request, "limit", 1, maximum)
    return default if limit is None else limit


def hours_to_ms(hours: float) -> int:
    return round(hours * MS_PER_HOUR)


def encode_cursor(country: str, start_ms: int, end_ms: int, position: StartPosition) -> str:
    """An opaque cursor that pins the window, so later pages neither miss nor repeat starts."""
    text = f"{country}|{start_ms}|{end_ms}|{position.hour}|{position.ts_ms}|{position.session_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(country: str, cursor: str) -> tuple[int, int, StartPosition]:
    """(start_ms, end_ms, position) from a cursor this endpoint issued for this country."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, start, end, hour, ts, session = text.split("|")
        if owner != country:
            raise ValueError("cursor belongs to another country")
        position = StartPosition(int(hour), int(ts), uuid.UUID(hex=session))
        return int(start), int(end), position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("cursor: not a cursor returned by this endpoint for this country") from None
