"""Unit tests of the synthetic data generator: determinism, the reference file's shape, edge cases, outputs."""

from __future__ import annotations

import argparse
import bz2
import collections
import datetime as dt
import gzip
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import gen
from daemon.core.config import ClockConfig, Config
from daemon.core.config import replace as replace_config
from daemon.core.events import InvalidEvent, parse_event
from daemon.core.instants import UTC
from daemon.tools.gen.model import (
    BAD_COUNTRIES,
    COUNTRIES,
    MAX_SESSIONS_PER_PLAYER,
    GenOptions,
    build_dataset,
    generate,
)

SMALL = 20_000
KEY_ORDER_START = ["player_id", "country", "event", "session_id", "ts"]
KEY_ORDER_END = ["player_id", "event", "session_id", "ts"]
TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
NOW = dt.datetime(2016, 12, 1, tzinfo=UTC)


def decoded(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def small() -> list[str]:
    return list(generate(GenOptions(events=SMALL, seed=7)))


@pytest.fixture(scope="module")
def edgy() -> list[str]:
    options = GenOptions(
        events=SMALL, seed=11, duplicate_rate=0.02, old_rate=0.03, future_rate=0.04, malformed_rate=0.05
    )
    return list(generate(options))


def run_gen(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    gen.register(parser.add_subparsers())
    args = parser.parse_args(["gen", *argv])
    config = replace_config(Config(), clock=ClockConfig(now="2016-12-01T00:00:00Z"))
    return int(args.run(args, config))


def test_same_seed_same_lines_and_other_seed_other_lines(small: list[str]) -> None:
    assert list(generate(GenOptions(events=SMALL, seed=7))) == small
    assert list(generate(GenOptions(events=SMALL, seed=8))) != small


def test_counts_follow_the_reference_shape(small: list[str]) -> None:
    events = decoded(small)
    kinds = collections.Counter(event["event"] for event in events)
    assert len(events) == SMALL
    assert abs(kinds["start"] - SMALL / 2) <= 3 and abs(kinds["end"] - SMALL / 2) <= 3
    sessions = collections.Counter(event["session_id"] for event in events)
    assert set(sessions.values()) <= {1, 2}
    assert len({(event["session_id"], event["event"]) for event in events}) == SMALL  # no duplicates


def test_defaults_reproduce_the_reference_counts() -> None:
    summary = build_dataset(GenOptions()).summary
    assert (summary.events, summary.starts, summary.ends) == (1_001_169, 500_584, 500_585)
    assert (summary.sessions, summary.complete, summary.start_only, summary.end_only) == (500_587, 500_582, 2, 3)
    assert summary.countries == 246
    assert (summary.first_ts[:10], summary.last_ts[:16]) == ("2016-11-02", "2016-12-01T22:05")


def test_lines_are_shaped_like_the_reference(small: list[str]) -> None:
    for line in small:
        event = json.loads(line)
        assert json.dumps(event) == line  # json.dumps spacing, nothing else
        if event["event"] == "start":
            assert list(event) == KEY_ORDER_START
            assert re.fullmatch(r"[A-Z]{2}", event["country"])
        else:
            assert list(event) == KEY_ORDER_END  # ends carry no country key at all
        assert re.fullmatch(r"[0-9a-f]{32}", event["player_id"])
        assert str(uuid.UUID(event["session_id"])) == event["session_id"]
        assert TS.fullmatch(event["ts"])
        parse_event(event)  # the server's own rules accept it


def test_timestamps_stay_in_the_range_and_ends_follow_starts(small: list[str]) -> None:
    events = decoded(small)
    assert all("2016-11-02T00:00:00" <= event["ts"] < "2016-12-01T22:05:30" for event in events)
    starts = {event["session_id"]: event["ts"] for event in events if event["event"] == "start"}
    lengths = [
        dt.datetime.fromisoformat(event["ts"]) - dt.datetime.fromisoformat(starts[event["session_id"]])
        for event in events
        if event["event"] == "end" and event["session_id"] in starts
    ]
    assert all(dt.timedelta(seconds=1) <= length <= dt.timedelta(hours=4) for length in lengths)
    median = sorted(lengths)[len(lengths) // 2]
    assert dt.timedelta(minutes=6) < median < dt.timedelta(minutes=15)


def test_players_and_countries(small: list[str]) -> None:
    events = decoded(small)
    sessions_of: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        sessions_of[event["player_id"]].add(event["session_id"])
    assert max(len(sessions) for sessions in sessions_of.values()) <= MAX_SESSIONS_PER_PLAYER
    assert len(sessions_of) > 500  # many players, not a handful
    countries = collections.Counter(event["country"] for event in events if event["event"] == "start")
    assert len(countries) > 200 and set(countries) <= set(COUNTRIES)
    assert max(countries.values()) < 5 * SMALL / 2 / len(COUNTRIES)  # roughly uniform


def test_country_list_matches_the_reference() -> None:
    assert len(COUNTRIES) == len(set(COUNTRIES)) == 246
    assert "NA" in COUNTRIES
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in COUNTRIES)


def test_players_reach_but_never_exceed_fifty_sessions() -> None:
    events = decoded(list(generate(GenOptions(events=200_000, seed=3))))
    sessions_of: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        sessions_of[event["player_id"]].add(event["session_id"])
    assert max(len(sessions) for sessions in sessions_of.values()) == MAX_SESSIONS_PER_PLAYER


def test_file_is_shuffled_so_ends_often_come_first(small: list[str]) -> None:
    first_seen: dict[str, str] = {}
    for event in decoded(small):
        first_seen.setdefault(event["session_id"], event["event"])
    share = sum(kind == "end" for kind in first_seen.values()) / len(first_seen)
    assert 0.4 < share < 0.6


def test_edge_case_rates_are_honoured(edgy: list[str]) -> None:
    valid, malformed = [], 0
    for line in edgy:
        try:
            valid.append(parse_event(json.loads(line)))
        except (ValueError, InvalidEvent):
            malformed += 1
    assert len(edgy) == SMALL
    assert malformed == round(SMALL * 0.05)
    duplicates = len(edgy) - len(set(edgy))
    assert duplicates == round(SMALL * 0.02)
    now_ms = int(NOW.timestamp() * 1000)
    old = sum(event.ts_ms < now_ms - 366 * 86_400_000 for event in valid)
    future = sum(event.ts_ms >= now_ms + 25 * 3_600_000 for event in valid)
    assert old == round(SMALL * 0.03) and future == round(SMALL * 0.04)


def test_malformed_lines_mix_every_kind(edgy: list[str]) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for line in edgy:
        try:
            obj = json.loads(line)
        except ValueError:
            kinds["json"] += 1
            continue
        try:
            parse_event(obj)
        except InvalidEvent as exc:
            kinds[str(exc).split(":")[0]] += 1
            if obj.get("country") in BAD_COUNTRIES:
                kinds["bad country value"] += 1
    assert {"json", "session_id", "country", "bad country value"} <= set(kinds)
    assert {"player_id", "event", "ts"} & set(kinds)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="add up"):
        GenOptions(events=10, old_rate=0.6, future_rate=0.6).check()
    with pytest.raises(ValueError, match="after"):
        GenOptions(start=NOW, end=NOW).check()


@pytest.mark.parametrize("suffix, opener", [(".jsonl", open), (".jsonl.gz", gzip.open), (".jsonl.bz2", bz2.open)])
def test_cli_writes_plain_and_compressed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, opener: Any
) -> None:
    path = tmp_path / f"events{suffix}"
    assert run_gen(["--events", "1000", "--seed", "5", "--output", str(path)]) == 0
    with opener(path, "rt", encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    assert lines == list(generate(GenOptions(events=1000, seed=5)))
    assert "generated 1,000 lines" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the .part file was renamed
    again = tmp_path / f"again{suffix}"
    run_gen(["--events", "1000", "--seed", "5", "--output", str(again)])
    assert again.read_bytes() == path.read_bytes()  # byte-identical, compressed or not


def test_cli_writes_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run_gen(["--events", "10", "--malformed-rate", "0.5", "--old-rate", "0.2"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out.decode().splitlines() == list(
        generate(GenOptions(events=10, seed=2016, malformed_rate=0.5, old_rate=0.2, now=NOW))
    )
    assert b"5 malformed" in captured.err


def test_cli_reports_bad_options() -> None:
    from daemon.core.errors import CommandError

    with pytest.raises(CommandError, match="after"):
        run_gen(["--start", "2016-12-01", "--end", "2016-11-01"])
    with pytest.raises(CommandError, match="ISO"):
        run_gen(["--start", "yesterday"])
