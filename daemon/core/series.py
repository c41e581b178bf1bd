"""Starts over time: the periods of a series window, its bound, and which countries get a series of their own."""

from __future__ import annotations

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


def build_series(
    periods: Sequence[Mapping[str, int]], countries: Sequence[str] | None, top: int | None
) -> dict[str, list[int]]:
    """Each series' count per period: the named countries (in their order), or the `top` largest plus
    "other" when any other country has starts, or every country with starts; largest first, ties by code.

    Built column by column (one list per country, totals by `sum`): an answer of 250 countries over
    24 periods is ~6,000 numbers, and a per-period merge of dicts cost several times as much CPU.
    """
    if countries is not None:
        return {country: [counts.get(country, 0) for counts in periods] for country in countries}
    every = {country: [counts.get(country, 0) for counts in periods] for country in set().union(*periods)}
    totals = {country: sum(values) for country, values in every.items()}
    ranked = sorted((country for country, total in totals.items() if total), key=lambda c: (-totals[c], c))
    if top is None or len(ranked) <= top:
        return {country: every[country] for country in ranked}
    series = {country: every[country] for country in ranked[:top]}
    series[OTHER] = [sum(column) for column in zip(*(every[country] for country in ranked[top:]), strict=True)]
    return series
