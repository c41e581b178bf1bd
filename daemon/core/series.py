"""Starts over time: the periods of a series window, its bound, and which countries get a series of their own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from daemon.core.instants import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE

STEPS = {"minute": MS_PER_MINUTE, "hour": MS_PER_HOUR, "day": MS_PER_DAY}  # finest first
MAX_PERIODS = 1500
OTHER = "other"


def step_problem(step: str, span_ms: int) -> str | None:
    """Why `step` cannot cover a window of `span_ms` (None: it can): too many periods, or none."""
    step_ms = STEPS[step]
    if span_ms > MAX_PERIODS * step_ms:
        allowed = next((name for name, ms in STEPS.items() if span_ms <= MAX_PERIODS * ms), None)
        hint = f"; use step={allowed}" if allowed else ""
        return f"step={step} allows at most {MAX_PERIODS * step_ms // MS_PER_HOUR:g} hours{hint}"
    if span_ms < step_ms:
        return f"step={step} needs a window of at least one {step}"
    return None


def period_starts(now_ms: int, span_ms: int, step: str) -> list[int]:
    """The starts of the `step` periods that begin in [now - span, now), oldest first.

    Periods are aligned to UTC minutes, hours or days; the newest one holds now, so it is partial
    unless now falls on its end. A span of at least one step holds at least one period.
    """
    step_ms = STEPS[step]
    first = -(-(now_ms - span_ms) // step_ms) * step_ms
    return list(range(first, now_ms, step_ms))


def period_windows(starts: Sequence[int], step: str, now_ms: int) -> list[tuple[int, int]]:
    """Each period as [start, end) in ms, the newest cut at now (inclusive, as the totals' windows)."""
    step_ms = STEPS[step]
    return [(start, min(start + step_ms, now_ms + 1)) for start in starts]


def series_keys(totals: Mapping[str, int], countries: Sequence[str] | None, top: int | None) -> list[str]:
    """The series to answer: the named countries (in their order), or the `top` largest plus "other"
    when any other country has starts, or every country with starts; largest first, ties by code."""
    if countries is not None:
        return list(countries)
    ranked = sorted((country for country, count in totals.items() if count), key=lambda c: (-totals[c], c))
    if top is None or len(ranked) <= top:
        return ranked
    return [*ranked[:top], OTHER]


def split_counts(counts: Mapping[str, int], keys: Sequence[str]) -> list[int]:
    """One period's counts in `keys` order; "other" is everything not named."""
    named = {key: counts.get(key, 0) for key in keys if key != OTHER}
    values = [named.get(key, 0) for key in keys]
    if OTHER in keys:
        values[keys.index(OTHER)] = sum(counts.values()) - sum(named.values())
    return values


def add_up(periods: Sequence[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in periods:
        total.update(counts)
    return total
