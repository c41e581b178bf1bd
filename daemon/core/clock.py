"""The service's notion of "now": real UTC, or an instant frozen by `clock.now` for demos and tests."""

from __future__ import annotations

import datetime as dt

from daemon.core.instants import UTC, datetime_to_ms, parse_instant


class Clock:
    """Returns "now" as an aware UTC datetime; frozen when constructed with an instant."""

    __slots__ = ("_frozen",)

    def __init__(self, frozen: dt.datetime | None = None) -> None:
        self._frozen = frozen

    @classmethod
    def from_setting(cls, setting: str) -> Clock:
        return cls(parse_instant(setting) if setting else None)

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def now(self) -> dt.datetime:
        return self._frozen if self._frozen is not None else dt.datetime.now(UTC)

    def now_ms(self) -> int:
        """Now in epoch milliseconds, the unit every stored timestamp and window bound uses."""
        return datetime_to_ms(self.now())
