"""The bench's pure helpers (percentiles, tables, /proc parsing) and one end-to-end ingest bench on the real node."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench import common, ingest, players, queries
from bench.__main__ import build_parser
from bench.common import (
    BenchError,
    fmt_ms,
    fmt_number,
    fmt_ratio,
    int_list,
    jsonable,
    markdown_table,
    median,
    parse_stat_cpu,
    parse_status_kb,
    percentile,
)
from daemon.tools.gen.model import GenOptions, generate

# --- statistics -------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # an observed value, never interpolated


def test_percentile_and_median_of_nothing_are_nan() -> None:
    assert math.isnan(percentile([], 50))
    assert math.isnan(median([]))


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_ratio_of_missing_baseline_is_nan() -> None:
    assert common.ratio(10.0, 4.0) == 2.5
    assert math.isnan(common.ratio(10.0, 0.0))
    assert math.isnan(common.ratio(10.0, math.nan))


# --- tables and formatting ------------------------------------------------------------------------


def test_markdown_table_aligns_numbers_right() -> None:
    table = markdown_table(("name", "events/s", "ratio"), [("service", "12,345", "1.50×"), ("direct", "—", "—")])
    lines = table.splitlines()
    assert lines[0] == "| name | events/s | ratio |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2] == "| service | 12,345 | 1.50× |"
    assert lines[3] == "| direct | — | — |"


def test_markdown_table_without_rows() -> None:
    assert markdown_table(("a", "b"), []).splitlines() == ["| a | b |", "|---|---|"]


def test_formatting() -> None:
    assert fmt_number(1234567.4) == "1,234,567"
    assert fmt_number(0.25, 2) == "0.25"
    assert fmt_number(math.nan) == "—"
    assert fmt_ms(3.14159) == "3.1"
    assert fmt_ms(1234.5) == "1,234"
    assert fmt_ratio(2.5) == "2.50×"
    assert fmt_ratio(42.0) == "42×"
    assert fmt_ratio(math.nan) == "—"


def test_jsonable_turns_nan_into_null_and_paths_into_text() -> None:
    data = jsonable({"rate": math.nan, "dir": Path("/tmp/x"), "runs": [ingest.Run(events=1, seconds=0.5)]})
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["rate"] is None
    assert json.loads(text)["dir"] == "/tmp/x"
    assert json.loads(text)["runs"][0]["events"] == 1


def test_int_list() -> None:
    assert int_list("100,10000, 100_000") == (100, 10_000, 100_000)
    for bad in ("", "1,x", "0", "-4"):
        with pytest.raises(argparse.ArgumentTypeError):
            int_list(bad)


# --- /proc ------------------------------------------------------------------------------------


def test_parse_stat_cpu_survives_odd_command_names() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", str(3 * ticks), str(ticks), "0", "0"]
    stat = "4242 (we ird) (name)) " + " ".join(fields)
    assert parse_stat_cpu(stat) == 4.0


def test_parse_status_kb() -> None:
    status = "Name:\tpython\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n"
    assert parse_status_kb(status, "VmRSS") == 10240
    assert parse_status_kb(status, "VmHWM") == 20480
    assert parse_status_kb(status, "VmSwap") is None


def test_own_process_cpu_and_memory() -> None:
    before = common.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn a little CPU, bounded by the clock
        pass
    assert common.cpu_seconds(os.getpid()) > before
    rss = common.status_kb(os.getpid(), "VmRSS")
    hwm = common.status_kb(os.getpid(), "VmHWM")
    assert rss is not None and hwm is not None
    assert 0 < rss <= hwm
    assert common.status_kb(2**22 + 12345, "VmRSS") is None  # no such process


def test_cpu_meter_skips_unknown_processes() -> None:
    meter = common.CpuMeter({"self": os.getpid(), "absent": None})
    meter.start()
    used = meter.stop()
    assert set(used) == {"self"}
    assert used["self"] >= 0


async def test_rss_sampler_keeps_the_peak() -> None:
    async with common.RssSampler(os.getpid(), interval=0.01) as sampler:
        await asyncio.sleep(0.1)
    assert sampler.samples >= 3
    assert sampler.peak_kb > 0


def test_cpu_model_and_memory_from_proc_text() -> None:
    assert common.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert common.memory_mb("MemTotal:       24684544 kB\nMemFree: 1 kB\n") == 24106


def test_one_bench_per_keyspace(tmp_path: Path) -> None:
    with common.keyspace_lock("ks", tmp_path), pytest.raises(BenchError, match="another bench"):  # noqa: SIM117
        with common.keyspace_lock("ks", tmp_path):
            pass
    with common.keyspace_lock("ks", tmp_path):  # released by the first holder
        pass


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((common.LOOPBACK, 0))
        server.listen()
        assert common.port_in_use(server.getsockname()[1])
    assert not common.port_in_use(common.free_port())


def test_a_dead_daemon_is_noticed(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - closed by stop()
    daemon = common.Daemon(common.DaemonSpec("ks", 1, tmp_path / "log"), process, log)
    with pytest.raises(BenchError, match="exited during the bench"):
        daemon.check_alive()
    assert asyncio.run(daemon.stop()) == 0
    assert log.closed


# --- the ingest bench's pieces ----------------------------------------------------------------------


def test_bodies_are_json_lines_batches() -> None:
    lines = [b'{"a": %d}' % i for i in range(5)]
    bodies = ingest.bodies_of(lines, 2)
    assert bodies == [b'{"a": 0}\n{"a": 1}', b'{"a": 2}\n{"a": 3}', b'{"a": 4}']


def test_service_grid_skips_idle_clients() -> None:
    options = ingest.IngestOptions(batch_sizes=(100, 10_000, 100_000), clients=(1, 4, 8))
    grid, skipped = ingest.service_grid(options, 20_000)
    assert grid == [(100, 1), (100, 4), (100, 8), (10_000, 1), (20_000, 1)]
    assert len(skipped) == 4  # 10k × 4 and × 8 (two batches); 100k × 4 and × 8 (one batch)


def test_quick_flag_sets_small_defaults_that_flags_override() -> None:
    args = build_parser().parse_args(["ingest", "--quick", "--runs", "2"])
    options = ingest.options_from(args)
    assert options.events == ingest.QUICK["events"]
    assert options.runs == 2
    assert options.memory_batch == 0
    defaults = ingest.options_from(build_parser().parse_args(["ingest"]))
    assert (defaults.events, defaults.runs, defaults.batch_sizes) == (100_000, 3, (100, 10_000, 100_000))
    with pytest.raises(BenchError):
        ingest.options_from(build_parser().parse_args(["ingest", "--keyspace", "no-dashes"]))


def test_parsed_events_are_all_accepted() -> None:
    lines = [line.encode() for line in generate(GenOptions(events=200, seed=7))]
    events = ingest.parse_events(lines, common.bench_config())
    assert len(events) == 200


# --- the queries bench's pieces ------------------------------------------------------------------


def test_facts_count_starts_up_to_the_clock() -> None:
    lines = list(generate(GenOptions(events=2_000, seed=3)))
    facts = queries.gather_facts(lines)
    starts = [json.loads(line) for line in lines if '"event": "start"' in line]
    assert facts.starts_until_now == sum(start["ts"] <= "2016-12-01T00:00:00" for start in starts)
    assert 0 < facts.starts_until_now < len(starts)  # the dataset runs on past the frozen clock
    assert facts.countries == {start["country"] for start in starts}


def test_fresh_events_fall_after_the_clock_and_inside_the_accepted_margin() -> None:
    options = queries.QueryOptions(ingest_events=500)
    lines = queries.fresh_lines(options)
    stamps = [json.loads(line)["ts"] for line in lines]
    assert len(lines) == 500
    assert min(stamps) > "2016-12-01T00:00:00"
    assert max(stamps) < "2016-12-01T00:10:00"  # a few minutes, like live traffic


def test_each_dataset_size_has_its_keyspace() -> None:
    parse = build_parser().parse_args
    assert queries.options_from(parse(["queries"])).keyspace == "bench_queries"
    assert queries.options_from(parse(["queries", "--events", "100000"])).keyspace == "bench_queries_100000"
    assert queries.options_from(parse(["queries", "--events", "5", "--keyspace", "mine"])).keyspace == "mine"


def test_query_paths_use_known_countries_and_players() -> None:
    facts = queries.Facts(countries={"FI"}, players={"a" * 32}, starts_until_now=1)
    paths = {query.route: query.path(random.Random(1)) for query in queries.queries_for(facts)}
    assert paths["/v1/countries/{C}/session-starts?hours=720"] == "/v1/countries/FI/session-starts?hours=720"
    assert paths["/complete_sessions/{id}"] == f"/complete_sessions/{'a' * 32}"
    assert sum(query.main for query in queries.queries_for(facts)) == 8


def test_the_heavy_players_expected_answer_is_its_newest_complete_starts() -> None:
    dataset = players.build_dataset(players.PlayerOptions(sessions=300, light_sessions=2))
    events = [orjson.loads(line) for line in dataset.lines]
    heavy = [event for event in events if event["player_id"] == dataset.heavy]
    ends = {event["session_id"] for event in heavy if event["event"] == "end"}
    starts = [event for event in heavy if event["event"] == "start"]
    assert len(ends) == 300 and len(starts) == 300 + players.OPEN_SESSIONS
    complete = sorted((event for event in starts if event["session_id"] in ends), key=lambda e: e["ts"], reverse=True)
    assert dataset.expected == [event["session_id"] for event in complete[:20]]
    newest = max(starts, key=lambda event: event["ts"])
    assert newest["session_id"] not in ends  # the heavy player's newest sessions are open
    year_ago = "2015-12-02T00:00:00"
    assert all(year_ago < event["ts"] <= "2016-12-01T00:00:00.000" for event in events)
    assert len(dataset.light) == players.LIGHT_PLAYERS
    parsed = players.options_from(build_parser().parse_args(["players", "--sessions", "100"]))
    assert parsed.sessions == 100 and parsed.baseline is None


# --- end to end on the real node -----------------------------------------------------------------


def _port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((common.LOOPBACK, port)) != 0


@pytest.mark.cassandra
def test_quick_ingest_bench_end_to_end(isolated_keyspace: str, tmp_path: Path) -> None:
    port = common.free_port()
    command = [
        sys.executable, "-m", "bench", "ingest", "--quick",
        "--keyspace", isolated_keyspace, "--port", str(port), "--results-dir", str(tmp_path),
    ]
    began = time.monotonic()
    done = subprocess.run(command, check=False, cwd=common.REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - began < 60
    table = done.stdout
    assert "| writer | batch | clients | events/s (median) |" in table
    assert "| service | 100 | 1 |" in table
    assert "limit (" in table and "direct driver" in table and "original design" in table
    assert "Cassandra 5." in table
    [result_file] = tmp_path.glob("ingest-*.json")
    result = json.loads(result_file.read_text())
    assert result["command"].startswith("python -m bench ingest --quick")
    rows = result["rows"]
    assert [row["writer"].split()[0] for row in rows] == ["service"] * 4 + ["limit", "direct", "original"]
    for row in rows:
        assert row["events_per_second_median"] > 0
        assert all(run["events"] == row["events"] for run in row["runs"])
    service = rows[0]
    assert service["events"] == ingest.QUICK["events"]
    assert service["peak_rss_mb"] > 10
    assert service["runs"][0]["cpu"]["writer"] > 0
    assert _port_closed(port)  # the bench stopped the daemon it started
    common.lock_path(isolated_keyspace).unlink(missing_ok=True)  # the keyspace is dropped: no one locks it again
