"""Streams a JSON Lines file to `POST /v1/events` in batches, C requests at a time, with retries."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from daemon.tools.load.source import SAMPLE_REJECTIONS, Batch, Failure, LineSource, LoadSummary, Progress, Rejection

if TYPE_CHECKING:
    import aiohttp

__all__ = ["LoadError", "LoadOptions", "LoadSummary", "classify", "load"]

_MAX_REASONS = 50  # distinct rejection reasons tallied; beyond that they are only counted
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class LoadOptions:
    url: str = "http://127.0.0.1:8080"
    # Few large requests: the daemon keeps a player's events of one request in one batch, so a
    # 1M-event load in 50,000-event requests, two in flight, sends fewer batches and runs ~1.3x the
    # rate of 10,000 x 4 (BENCHMARKS.md), while holding no more events in flight (100,000, half of
    # ingest.max_queued_events).
    batch_size: int = 50_000
    concurrency: int = 2
    max_retries: int = 8
    gzip: bool = False
    rejected_file: Path | None = None
    progress: bool = False
    timeout: float = 120.0  # seconds per request, including the server's own back-pressure wait
    backoff_base: float = 0.5  # first retry delay without Retry-After; doubles per attempt
    backoff_max: float = 30.0


class LoadError(Exception):
    """The load cannot go on (413, 415, an unexpected answer, an unreadable file); carries the partial summary."""

    def __init__(self, message: str, summary: LoadSummary) -> None:
        super().__init__(message)
        self.summary = summary


class _Fatal(Exception):
    """An answer that retrying cannot fix; becomes a LoadError with the summary so far."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """A batch's final answer: counts and the rejected (batch index, reason) pairs."""

    received: int
    accepted: int
    discarded: int
    rejected: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class _Retry:
    reason: str
    retry_after: float | None  # seconds the server asked us to wait, if it said


# -- answers --------------------------------------------------------------------------------


def classify(status: int, headers: Any, body: bytes, batch_size: int) -> _Answer | _Retry:
    """Turn one HTTP answer into a final answer or a retry; raise _Fatal when the load must stop."""
    if status in (200, 400):
        return _parse_answer(status, body, batch_size)
    if status in _RETRYABLE:
        return _Retry(f"HTTP {status}{_detail(body)}", _retry_after(headers.get("Retry-After")))
    if status == 413:
        raise _Fatal(
            f"the server refused a batch of {batch_size:,} events as too large (413{_detail(body)}); "
            "lower --batch-size"
        )
    if status == 415:
        raise _Fatal(f"the server does not accept the body's type or encoding (415{_detail(body)})")
    hint = " (is --url the service's base URL?)" if status in (404, 405) else ""
    raise _Fatal(f"unexpected answer HTTP {status}{_detail(body)}{hint}")


def _parse_answer(status: int, body: bytes, batch_size: int) -> _Answer:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if status == 200:
            raise _Fatal(f"the server answered 200 with a body that is not the expected JSON{_detail(body)}")
        data = {"error": f"HTTP 400{_detail(body)}"}  # e.g. from a proxy in between
    if "received" not in data:
        # The whole body was unusable: every line of the batch counts as rejected for that reason.
        reason = str(data.get("error") or "rejected without a reason")
        return _Answer(batch_size, 0, 0, [(index, reason) for index in range(batch_size)])
    try:
        rejected = [(int(item["index"]), str(item.get("error", ""))) for item in data.get("rejected") or ()]
        counts = (int(data["received"]), int(data.get("accepted", 0)), int(data.get("discarded", 0)))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise _Fatal(f"the server's answer does not have the expected shape{_detail(body)}") from None
    if any(not 0 <= index < batch_size for index, _ in rejected):
        raise _Fatal(f"the server rejected an index outside the batch of {batch_size:,}{_detail(body)}")
    return _Answer(*counts, rejected)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; the HTTP-date form is rare from our server and treated as absent."""
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return None


def _detail(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


# -- the load -------------------------------------------------------------------------------


class _Run:
    """State shared by the reader and the senders of one load."""

    __slots__ = ("options", "summary", "progress", "rejected_out", "stop_reason", "endpoint", "_jitter")

    def __init__(self, options: LoadOptions, progress: Progress | None, rejected_out: TextIO | None) -> None:
        self.options = options
        self.summary = LoadSummary()
        self.progress = progress
        self.rejected_out = rejected_out
        self.stop_reason = ""
        self.endpoint = options.url.rstrip("/") + "/v1/events"
        self._jitter = random.Random()

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        delay = min(self.options.backoff_max, self.options.backoff_base * 2.0 ** (attempt - 1))
        # Jitter so several senders that failed together do not hammer the server in step.
        return delay * self._jitter.uniform(0.5, 1.0)

    def record(self, batch: Batch, answer: _Answer) -> None:
        summary = self.summary
        summary.received += answer.received
        summary.accepted += answer.accepted
        summary.discarded += answer.discarded
        summary.rejected += len(answer.rejected)
        if answer.rejected:
            self._record_rejections(batch, answer.rejected)

    def _record_rejections(self, batch: Batch, rejected: list[tuple[int, str]]) -> None:
        summary = self.summary
        for _, reason in rejected:
            if reason in summary.reasons or len(summary.reasons) < _MAX_REASONS:
                summary.reasons[reason] += 1
        mapped = sorted((batch.line_numbers[index], reason) for index, reason in rejected)
        samples = summary.samples + [Rejection(line, reason) for line, reason in mapped[:SAMPLE_REJECTIONS]]
        summary.samples = sorted(samples, key=lambda item: item.line)[:SAMPLE_REJECTIONS]
        if self.rejected_out is not None:
            by_line = {number: line for number, line in zip(batch.line_numbers, batch.lines, strict=True)}
            self.rejected_out.writelines(
                json.dumps({"line": line, "error": reason, "raw": by_line[line].decode("utf-8", "replace")}) + "\n"
                for line, reason in mapped
            )

    def fail(self, batch: Batch, reason: str) -> None:
        summary = self.summary
        summary.failed_batches += 1
        summary.failed_events += len(batch.lines)
        first, last = batch.line_numbers[0], batch.line_numbers[-1]
        summary.failures.append(Failure(first, last, reason))
        # The server stayed unreachable through every retry: later batches would fare no better.
        if not self.stop_reason:
            self.stop_reason = f"gave up on lines {first}-{last} after {self.options.max_retries} retries"


async def _send(session: aiohttp.ClientSession, run: _Run, batch: Batch) -> None:
    """POST one batch until it gets a final answer or runs out of retries."""
    import aiohttp

    headers = {"Content-Type": "application/x-ndjson"}
    if run.options.gzip:
        headers["Content-Encoding"] = "gzip"
    attempt = 0
    while True:
        try:
            # A fresh BytesIO per attempt: aiohttp streams it in chunks (and warns about big raw bytes).
            async with session.post(run.endpoint, data=io.BytesIO(batch.body), headers=headers) as response:
                body = await response.read()
                outcome = classify(response.status, response.headers, body, len(batch.lines))
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = _Retry(f"{type(exc).__name__}: {exc}".rstrip(": "), None)
        except _Fatal as exc:
            raise LoadError(str(exc), run.summary) from None
        if isinstance(outcome, _Answer):
            run.record(batch, outcome)
            run.summary.events_sent += len(batch.lines)
            break
        attempt += 1
        if attempt > run.options.max_retries:
            run.fail(batch, outcome.reason)
            break
        run.summary.retries += 1
        await asyncio.sleep(run.backoff(attempt, outcome.retry_after))
    run.summary.batches += 1
    if run.progress is not None:
        run.progress.advance(len(batch.lines), batch.input_bytes)


async def _sender(session: aiohttp.ClientSession, run: _Run, queue: asyncio.Queue[Batch | None]) -> None:
    while (batch := await queue.get()) is not None:
        if run.stop_reason:
            run.summary.unsent_events += len(batch.lines)
            continue
        await _send(session, run, batch)


async def _reader(
    source: LineSource, executor: ThreadPoolExecutor, run: _Run, queue: asyncio.Queue[Batch | None]
) -> None:
    """Read batches off the event loop (bz2 inflates at a few tens of MB/s) into the bounded queue."""
    loop = asyncio.get_running_loop()
    try:
        while not run.stop_reason:
            batch = await loop.run_in_executor(
                executor, source.read_batch, run.options.batch_size, run.options.gzip
            )
            if batch is None:
                break
            await queue.put(batch)  # waits while C batches are already queued: memory stays ~2C batches
    except OSError as exc:  # includes a corrupt .gz/.bz2
        raise LoadError(f"{source.name}: {exc.strerror or exc}", run.summary) from None
    except EOFError as exc:  # a truncated .gz/.bz2
        raise LoadError(f"{source.name}: {exc}", run.summary) from None
    # Not in `finally`: on failure the task group cancels the senders, and a put could wait forever.
    for _ in range(run.options.concurrency):
        await queue.put(None)


async def load(path: str | Path, options: LoadOptions, progress_stream: TextIO | None = None) -> LoadSummary:
    """Send every non-blank line of `path` (`-` = stdin) to the server; raise LoadError when it cannot go on."""
    stream = sys.stderr if progress_stream is None else progress_stream
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        rejected_out = None
        if options.rejected_file is not None:
            rejected_out = stack.enter_context(open(options.rejected_file, "w", encoding="utf-8"))
        source = LineSource.open(str(path))
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-reader")
        progress = Progress(stream, source.total_bytes) if Progress.wanted(options.progress, stream) else None
        run = _Run(options, progress, rejected_out)
        try:
            await _pump(source, executor, run)
        finally:
            run.summary.wall_seconds = time.monotonic() - began
            run.summary.stopped = run.stop_reason
            if progress is not None:
                progress.close()
            # Close in the reader's own thread, after any read still running there.
            await asyncio.get_running_loop().run_in_executor(executor, source.close)
            executor.shutdown(wait=False)
    return run.summary


async def _pump(source: LineSource, executor: ThreadPoolExecutor, run: _Run) -> None:
    import aiohttp

    options = run.options
    queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=options.concurrency)
    connector = aiohttp.TCPConnector(limit=options.concurrency)
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, asyncio.TaskGroup() as group:
            group.create_task(_reader(source, executor, run, queue))
            for _ in range(options.concurrency):
                group.create_task(_sender(session, run, queue))
    except* LoadError as errors:
        raise errors.exceptions[0] from None
