"""Unit tests of the loader client against a fake `/v1/events` (the real server is tested elsewhere)."""

from __future__ import annotations

import argparse
import asyncio
import bz2
import dataclasses
import gzip
import io
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.cli import load as load_command
from daemon.core.config import Config
from daemon.tools.gen.model import GenOptions, generate
from daemon.tools.load.loader import LoadError, LoadOptions, load
from daemon.tools.load.source import LineSource, Progress, describe

AiohttpServer = Callable[..., Awaitable[TestServer]]
BAD_COUNTRY = "country: must be two uppercase letters (ISO 3166-1 alpha-2)"


@dataclasses.dataclass
class FakeServer:
    """Stores nothing; counts, misbehaves on demand, and rejects starts whose country is not two letters."""

    unavailable: int = 0  # answer 503 + Retry-After: 0 to this many calls first
    status: int = 0  # when set, answer every call with it
    whole_body_error: str = ""  # a batch containing this text gets 400 {"error": ...}
    delay: float = 0.0
    calls: int = 0
    events: int = 0
    lines: list[str] = dataclasses.field(default_factory=list)
    encodings: set[str] = dataclasses.field(default_factory=set)
    content_types: set[str] = dataclasses.field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self._answer(request, (await request.read()).decode())
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, body: str) -> web.Response:
        self.encodings.add(request.headers.get("Content-Encoding", ""))
        self.content_types.add(request.content_type)
        if self.unavailable > 0 or self.status == 503:
            self.unavailable -= 1
            return web.json_response({"error": "overloaded"}, status=503, headers={"Retry-After": "0"})
        if self.status:
            return web.json_response({"error": "no"}, status=self.status)
        if self.whole_body_error and self.whole_body_error in body:
            return web.json_response({"error": self.whole_body_error}, status=400)
        lines = body.split("\n")
        rejected = []
        for index, line in enumerate(lines):
            event = json.loads(line)
            if event["event"] == "start" and len(event["country"]) != 2:
                rejected.append({"index": index, "error": BAD_COUNTRY})
            else:
                self.events += 1
                self.lines.append(line)
        answer = {"received": len(lines), "accepted": len(lines) - len(rejected), "discarded": 0, "rejected": rejected}
        return web.json_response(answer, status=400 if rejected else 200)


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeServer:
    state = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/events", state.handle)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("")).rstrip("/")
    return state


def events(count: int, seed: int = 1) -> list[str]:
    return list(generate(GenOptions(events=count, seed=seed)))


def write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".bz2":
        path.write_bytes(bz2.compress(text.encode()))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def with_bad_country(line: str) -> str:
    event = json.loads(line)
    return json.dumps({**event, "country": "(.uk)"}) if event["event"] == "start" else line


def options(fake: FakeServer, **changes: Any) -> LoadOptions:
    return dataclasses.replace(LoadOptions(url=fake.url, batch_size=4, concurrency=3), **changes)


async def test_sends_every_line_and_skips_blank_ones(fake: FakeServer, tmp_path: Path) -> None:
    lines = events(25)
    path = write(tmp_path / "e.jsonl", [*lines[:10], "", "   ", *lines[10:]])
    summary = await load(path, options(fake))
    assert summary.ok and load_command.exit_code(summary) == 0
    assert (summary.events_sent, summary.received, summary.accepted, summary.batches) == (25, 25, 25, 7)
    assert sorted(fake.lines) == sorted(lines)
    assert fake.content_types == {"application/x-ndjson"} and fake.encodings == {""}


async def test_retries_503_honouring_retry_after(fake: FakeServer, tmp_path: Path) -> None:
    fake.unavailable = 3
    summary = await load(write(tmp_path / "e.jsonl", events(12)), options(fake, concurrency=1))
    assert summary.ok and summary.retries == 3
    assert fake.events == summary.accepted == 12 and fake.calls == 3 + 3


async def test_rejections_map_to_file_lines_and_are_written_out(fake: FakeServer, tmp_path: Path) -> None:
    lines = events(40)
    bad_at = [i for i, line in enumerate(lines) if '"start"' in line][:8]
    mixed = [with_bad_country(line) if i in bad_at else line for i, line in enumerate(lines)]
    # Two blank lines up front: file line numbers are 1-based and count blank lines too.
    path = write(tmp_path / "e.jsonl", ["", "", *mixed])
    rejected_file = tmp_path / "rejected.jsonl"
    summary = await load(path, options(fake, batch_size=5, rejected_file=rejected_file))
    expected_lines = [i + 3 for i in bad_at]
    assert (summary.received, summary.accepted, summary.rejected) == (40, 32, 8)
    assert [sample.line for sample in summary.samples] == expected_lines[:5]
    assert summary.reasons == {BAD_COUNTRY: 8}
    assert not summary.ok and load_command.exit_code(summary) == 1
    written = sorted((json.loads(line) for line in rejected_file.read_text().splitlines()), key=lambda r: r["line"])
    assert [(r["line"], r["error"], r["raw"]) for r in written] == [
        (i + 3, BAD_COUNTRY, mixed[i]) for i in bad_at
    ]


async def test_a_whole_body_error_rejects_the_whole_batch(fake: FakeServer, tmp_path: Path) -> None:
    lines = events(12)
    fake.whole_body_error = lines[5]  # the second batch of four
    summary = await load(write(tmp_path / "e.jsonl", lines), options(fake))
    assert (summary.received, summary.accepted, summary.rejected) == (12, 8, 4)
    assert [sample.line for sample in summary.samples] == [5, 6, 7, 8]
    assert {sample.error for sample in summary.samples} == {lines[5]}


@pytest.mark.parametrize("suffix", [".jsonl.bz2", ".jsonl.gz"])
@pytest.mark.parametrize("compress_body", [False, True])
async def test_streams_compressed_files(fake: FakeServer, tmp_path: Path, suffix: str, compress_body: bool) -> None:
    lines = events(1_000, seed=4)
    path = write(tmp_path / f"e{suffix}", lines)
    summary = await load(path, options(fake, batch_size=128, gzip=compress_body))
    assert summary.ok and summary.accepted == 1_000 and summary.batches == 8
    assert sorted(fake.lines) == sorted(lines)
    assert fake.encodings == {"gzip" if compress_body else ""}


async def test_reads_stdin(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = events(30)
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress("\n".join(lines).encode())))
    monkeypatch.setattr(sys, "stdin", stdin)
    summary = await load("-", options(fake, batch_size=7))
    assert summary.ok and summary.accepted == 30


async def test_gives_up_after_max_retries_and_stops(fake: FakeServer, tmp_path: Path) -> None:
    fake.status = 503
    summary = await load(write(tmp_path / "e.jsonl", events(20)), options(fake, concurrency=1, max_retries=2))
    assert (summary.failed_batches, summary.failed_events, summary.retries) == (1, 4, 2)
    assert fake.calls == 3 and summary.stopped and summary.unsent_events > 0
    assert load_command.exit_code(summary) == 1
    assert "stopped early" in describe(summary, "e.jsonl", None)


async def test_connection_errors_are_retried_then_fail(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe closes
    opts = LoadOptions(url=f"http://127.0.0.1:{port}", batch_size=4, concurrency=2, max_retries=2, backoff_base=0.001)
    summary = await load(write(tmp_path / "e.jsonl", events(8)), opts)
    assert summary.failed_batches >= 1 and summary.retries >= 2
    assert "Connect" in summary.failures[0].reason


async def test_too_large_stops_the_load_clearly(fake: FakeServer, tmp_path: Path) -> None:
    fake.status = 413
    with pytest.raises(LoadError, match="lower --batch-size") as caught:
        await load(write(tmp_path / "e.jsonl", events(20)), options(fake))
    assert caught.value.summary.accepted == 0


async def test_requests_in_flight_stay_within_the_concurrency(fake: FakeServer, tmp_path: Path) -> None:
    fake.delay = 0.02
    summary = await load(write(tmp_path / "e.jsonl", events(60)), options(fake, batch_size=3, concurrency=2))
    assert summary.ok and summary.batches == 20
    assert fake.max_in_flight == 2


def run_cli(argv: list[str]) -> int:
    """The command as `python -m daemon load` runs it (its own event loop), minus the other commands."""
    parser = argparse.ArgumentParser()
    load_command.register(parser.add_subparsers())
    args = parser.parse_args(["load", *argv])
    return int(args.run(args, Config()))


async def test_cli_exit_codes_and_summary(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.jsonl.bz2", events(10))
    assert await asyncio.to_thread(run_cli, [str(good), "--url", fake.url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "10 events sent" in out and "accepted 10" in out
    bad = write(tmp_path / "bad.jsonl", [with_bad_country(line) for line in events(10)])
    rejected = tmp_path / "rejected.jsonl"
    argv = [str(bad), "--url", fake.url, "--batch-size", "3", "--rejected-file", str(rejected)]
    assert await asyncio.to_thread(run_cli, argv) == 1
    out = capsys.readouterr().out
    assert f"{BAD_COUNTRY}" in out and f"written to {rejected}" in out
    assert await asyncio.to_thread(run_cli, [str(tmp_path / "missing.jsonl")]) == 2
    with pytest.raises(SystemExit) as usage:
        run_cli([str(good), "--batch-size", "0"])
    assert usage.value.code == 2


def test_progress_shows_rate_share_and_eta() -> None:
    stream = io.StringIO()
    now = [100.0]
    progress = Progress(stream, total_bytes=1_000, clock=lambda: now[0], interval=0)
    now[0] = 110.0
    progress.advance(5_000, 250)
    assert "5,000 events sent  500 events/s   25.0%  ETA 0:00:30" in stream.getvalue()
    progress.close()
    assert stream.getvalue().endswith("\n")
    assert not Progress.wanted(True, io.StringIO())  # not a terminal: no progress line


def test_line_source_sniffs_compression_not_names(tmp_path: Path) -> None:
    path = tmp_path / "misnamed.jsonl"
    path.write_bytes(bz2.compress(b'{"a": 1}\n\n{"b": 2}\n'))
    source = LineSource.open(str(path))
    try:
        batch = source.read_batch(10, compress=False)
        assert batch is not None and batch.lines == [b'{"a": 1}', b'{"b": 2}']
        assert list(batch.line_numbers) == [1, 3] and batch.input_bytes == path.stat().st_size
        assert source.read_batch(10, compress=False) is None
    finally:
        source.close()
