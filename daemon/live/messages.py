"""The JSON messages the live feed sends, as UTF-8 payloads ready to be framed."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from daemon.core.events import Event
from daemon.core.instants import format_instant, ms_to_datetime
from daemon.live.subscriptions import Countries


def start_message(event: Event) -> bytes:
    return orjson.dumps(
        {
            "type": "session_start",
            "country": event.country,
            "player_id": event.player_id,
            "session_id": event.session_id,
            "ts": format_instant(ms_to_datetime(event.ts_ms)),
        }
    )


def subscribed_message(countries: Countries) -> bytes:
    return orjson.dumps({"type": "subscribed", "countries": None if countries is None else sorted(countries)})


def error_message(reason: str) -> bytes:
    return orjson.dumps({"type": "error", "error": reason})


def lagged_message(dropped: int, countries: Mapping[str, int]) -> bytes:
    # Per-country counts let a client (the dashboard) keep exact totals despite the gap.
    return orjson.dumps({"type": "lagged", "dropped": dropped, "countries": dict(sorted(countries.items()))})
