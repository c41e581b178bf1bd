"""Whether the live bus works, since when and why not: what /readyz shows and tests wait on."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal

from daemon.core.instants import format_instant

State = Literal["connecting", "up", "down"]


class BusState:
    """`connecting` until the first answer from Redis, then `up` or `down`; changes are awaitable."""

    __slots__ = ("state", "since", "error", "_changed")

    def __init__(self) -> None:
        self.state: State = "connecting"
        self.since = dt.datetime.now(dt.UTC)
        self.error = ""
        self._changed = asyncio.Event()

    @property
    def up(self) -> bool:
        return self.state == "up"

    def change(self, state: State, error: str = "") -> bool:
        """Move to `state`; False (nothing changes) when already there."""
        if state == self.state:
            return False
        self.state, self.error, self.since = state, error, dt.datetime.now(dt.UTC)
        self._changed.set()
        self._changed = asyncio.Event()
        return True

    def seconds(self) -> float:
        """How long the current state has lasted."""
        return (dt.datetime.now(dt.UTC) - self.since).total_seconds()

    async def wait_for(self, state: State) -> None:
        """Until the bus is in `state` (callers bound it with a timeout)."""
        while self.state != state:
            await self._changed.wait()

    def report(self) -> dict[str, Any]:
        return {"state": self.state, "since": format_instant(self.since), "error": self.error or None}
