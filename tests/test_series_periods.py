"""The series' periods, bounds and keys, and the level arithmetic the exact counts split periods with (no Cassandra)."""

from __future__ import annotations

from collections import Counter

from daemon.core.instants import MS_PER_HOUR, MS_PER_MINUTE, parse_instant
from daemon.core.levels import DAY, HOUR, MINUTE, MONTH, ancestors, children
from daemon.core.series import build_series, period_starts, period_windows, step_problem

NOW_MS = int(parse_instant("2016-12-01T00:30:15Z").timestamp() * 1000)


def test_periods_start_in_the_window_and_the_newest_is_cut_at_now() -> None:
    starts = period_starts(NOW_MS, 2 * MS_PER_HOUR, "hour")
    hour = NOW_MS // MS_PER_HOUR * MS_PER_HOUR
    assert starts == [hour - MS_PER_HOUR, hour]  # 23:00 and 00:00; 22:00 began before now - 2 h
    assert period_windows(starts, "hour", NOW_MS)[-1] == (hour, NOW_MS + 1)
    assert len(period_starts(NOW_MS, 25 * MS_PER_HOUR, "minute")) == 1500
    aligned = NOW_MS // MS_PER_HOUR * MS_PER_HOUR
    assert period_starts(aligned, 24 * MS_PER_HOUR, "hour")[-1] == aligned - MS_PER_HOUR  # now's own hour is empty


def test_step_bounds_name_the_step_to_use() -> None:
    assert step_problem("minute", 25 * MS_PER_HOUR) is None
    assert step_problem("minute", 25 * MS_PER_HOUR + 1) == "step=minute allows at most 25 hours; use step=hour"
    assert step_problem("hour", 8760 * MS_PER_HOUR) == "step=hour allows at most 1500 hours; use step=day"
    assert step_problem("day", MS_PER_HOUR) == "step=day needs a window of at least one day"
    assert step_problem("minute", MS_PER_MINUTE) is None


def test_series_ranked_named_and_other() -> None:
    periods = [Counter({"FI": 2, "EE": 1, "NO": 4}), Counter({"FI": 3, "SE": 5, "DE": 0}), Counter()]
    assert build_series(periods, None, None) == {"SE": [0, 5, 0], "FI": [2, 3, 0], "NO": [4, 0, 0], "EE": [1, 0, 0]}
    assert list(build_series(periods, None, None)) == ["FI", "SE", "NO", "EE"]  # ties (5) by code
    assert build_series(periods, None, 2) == {"FI": [2, 3, 0], "SE": [0, 5, 0], "other": [5, 0, 0]}
    assert build_series(periods, None, 4) == build_series(periods, None, None)  # nothing remains: no "other"
    assert build_series(periods, ["QQ", "FI"], None) == {"QQ": [0, 0, 0], "FI": [2, 3, 0]}
    assert build_series([], None, 3) == {}


def test_children_and_ancestors_cover_each_period_exactly() -> None:
    november = 2016 * 12 + 10
    days = children(MONTH, november)
    assert len(days) == 30 and DAY.bucket_of(days[0]) == november and DAY.bucket_of(days[-1]) == november
    assert DAY.bucket_of(days[-1] + 1) == november + 1
    assert list(children(DAY, days[0])) == list(range(days[0] * 24, days[0] * 24 + 24))
    assert list(children(HOUR, 10)) == list(range(600, 660))
    minute = NOW_MS // MS_PER_MINUTE
    assert [level for level, _ in ancestors(MINUTE, minute)] == [MINUTE, HOUR, DAY, MONTH]
    assert ancestors(MINUTE, minute)[-1][1] == MONTH.of_ms(NOW_MS)
