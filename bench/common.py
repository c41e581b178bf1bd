"""Shared bench helpers: machine description, percentiles, /proc sampling, the daemon subprocess, tables, results."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import aiohttp

from cql.driver import Database
from daemon.core.config import Config, load_config
from daemon.core.config import replace as replace_config

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
LOOPBACK = "127.0.0.1"
DEMO_NOW = "2016-12-01T00:00:00Z"  # the dataset covers November 2016; pin the clock whatever config.toml says
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Tables the daemon writes; emptied between runs so every run starts from the same state.
DATA_TABLES = ("sessions_by_player", "player_starts", "country_starts", "start_hours_by_country", "starts_by_minute", "rollup_counts")
READY_TIMEOUT = 60.0
READY_POLL = 0.1
STOP_TIMEOUT = 90.0
MAX_SAMPLES = 10_000_000  # RSS samples per block: days at 50 ms, a bound rather than a limit


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (an observed value, never interpolated); NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def p50_p99(values: Sequence[float]) -> str:
    """"p50 / p99" of latencies in ms, as the tables show them."""
    return f"{fmt_ms(percentile(values, 50))} / {fmt_ms(percentile(values, 99))}"


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a run that produced nothing must not look like zero)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


# -- /proc ----------------------------------------------------------------------------------


def parse_stat_cpu(stat: str) -> float:
    """utime + stime in seconds from the text of /proc/<pid>/stat (all threads of the process).

    The command name (field 2) may hold spaces and parentheses, so fields are counted after the
    last ")": utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    """
    rest = stat.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def parse_status_kb(status: str, key: str) -> int | None:
    """A `Key:   1234 kB` value from the text of /proc/<pid>/status, in kB."""
    prefix = f"{key}:"
    for line in status.splitlines():
        if line.startswith(prefix):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float:
    return parse_stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def status_kb(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        return parse_status_kb(Path(f"/proc/{pid}/status").read_text(), key)
    return None


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds while the block runs; keeps the peak."""

    __slots__ = ("_task", "interval", "peak_kb", "pid", "samples")

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._sample()
        self._task = asyncio.create_task(self._run(), name=f"rss-sampler-{self.pid}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    async def _run(self) -> None:
        for _ in range(MAX_SAMPLES):  # normally ends when __aexit__ cancels it
            await asyncio.sleep(self.interval)
            self._sample()

    def _sample(self) -> None:
        rss = status_kb(self.pid, "VmRSS")
        if rss is not None:
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1


class CpuMeter:
    """CPU seconds used by named processes between `start()` and `stop()`; unknown (None) pids are skipped."""

    __slots__ = ("_began", "_pids")

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._began: dict[str, float] = {}

    def start(self) -> None:
        self._began = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._began[name] for name, pid in self._pids.items()}


# -- the machine ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Machine:
    nproc: int
    cpu_model: str
    memory_mb: int
    cassandra_version: str
    cassandra_heap: str
    cassandra_pid: int | None
    python: str
    driver: str
    aiohttp: str
    load_average: str
    revision: str  # git describe of the checkout: which code the numbers belong to


def cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo (the cores of a VM are alike)."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_mb(meminfo: str) -> int:
    return (parse_status_kb(meminfo, "MemTotal") or 0) // 1024


def cassandra_pid(config: Config) -> int | None:
    """The local node's JVM (started by `make node`), to meter its CPU; None when it is elsewhere."""
    from daemon.tools.node.files import NodePaths
    from daemon.tools.node.process import running_pid

    node = config.node
    if not Path(node.dir).is_absolute():  # relative to the checkout, wherever the bench runs from
        node = replace_config(node, dir=str(REPO / node.dir))
    return running_pid(NodePaths.of(node))


def java_heap(pid: int | None, configured: str) -> str:
    """-Xmx of the running JVM when visible, else the configured heap."""
    if pid is not None:
        with contextlib.suppress(OSError):
            for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0"):
                if arg.startswith("-Xmx"):
                    return arg[4:]
    return configured


async def describe_machine(db: Database, config: Config) -> Machine:
    import cassandra

    rows = await db.execute("SELECT release_version FROM system.local")
    pid = cassandra_pid(config)
    return Machine(
        nproc=os.cpu_count() or 1,
        cpu_model=cpu_model(Path("/proc/cpuinfo").read_text()),
        memory_mb=memory_mb(Path("/proc/meminfo").read_text()),
        cassandra_version=str(rows[0][0]) if rows else "unknown",
        cassandra_heap=java_heap(pid, config.node.heap),
        cassandra_pid=pid,
        python=platform.python_version(),
        driver=cassandra.__version__,
        aiohttp=aiohttp.__version__,
        load_average=" ".join(f"{value:.2f}" for value in os.getloadavg()),
        revision=await asyncio.to_thread(git_revision),
    )


def git_revision(checkout: Path = REPO) -> str:
    """`git describe --always --dirty` of `checkout` (read-only); 'unknown' outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty"],
            check=False, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine_markdown(machine: Machine) -> str:
    return (
        f"Machine: {machine.nproc} CPUs ({machine.cpu_model}), {machine.memory_mb:,} MB RAM; "
        f"Cassandra {machine.cassandra_version} (single node, heap {machine.cassandra_heap}); "
        f"Python {machine.python}, cassandra-driver {machine.driver}, aiohttp {machine.aiohttp}; "
        f"load average at start {machine.load_average}; code {machine.revision}"
    )


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for `100,10000,100000`."""
    try:
        values = tuple(int(part.strip().replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def command_line() -> str:
    return "python -m bench " + shlex.join(sys.argv[1:])


# -- tables and results ---------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""
    body = [[str(cell) for cell in row] for row in rows]
    aligns = ["---:" if body and all(_numeric(row[index]) for row in body) else "---" for index in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in body)
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    text = cell.replace(",", "").replace("×", "").replace("—", "").strip()
    if not text:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def fmt_number(value: float, digits: int = 0) -> str:
    """Thousands separators; an em dash for a missing (NaN) value."""
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def jsonable(value: Any) -> Any:
    """Dataclasses to dicts and NaN to null, so the file is strict JSON."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def write_results(kind: str, data: Mapping[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(jsonable(data), indent=2) + "\n", encoding="utf-8")
    return path


class Recordable(Protocol):
    def record(self) -> Mapping[str, Any]: ...


def publish(kind: str, result: Recordable, table: str, directory: Path) -> int:
    """Print a benchmark's report and keep its full record as JSON; the exit code for `run`."""
    print(table)
    path = write_results(kind, result.record(), directory)
    say(f"results written to {path}")
    return 0


def say(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the tables."""
    print(message, file=sys.stderr, flush=True)


# -- Cassandra ------------------------------------------------------------------------------


def bench_config() -> Config:
    """config.toml of the checkout (plus PSS_* overrides), wherever the bench is started from."""
    path = REPO / "config.toml"
    return load_config(path if path.exists() else None)


def keyspace_config(keyspace: str) -> Config:
    """The bench's config: the checkout's, pointed at the bench keyspace."""
    base = bench_config()
    return replace_config(base, cassandra=replace_config(base.cassandra, keyspace=keyspace))


@contextlib.asynccontextmanager
async def connected(config: Config) -> AsyncIterator[Database]:
    db = await Database.connect(config.cassandra)
    try:
        yield db
    finally:
        await db.close()


async def ensure_schema(db: Database, config: Config, keyspace: str) -> None:
    from cql.schema import apply_schema

    await apply_schema(db, config.cassandra, keyspace)


async def truncate(db: Database, keyspace: str, tables: Sequence[str]) -> float:
    """Empty the tables; returns the seconds it took (reported, never part of a timed run)."""
    began = time.perf_counter()
    for table in tables:
        await db.execute(f"TRUNCATE {keyspace}.{table}")
    return time.perf_counter() - began


# -- the daemon -----------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0


def check_keyspace(keyspace: str) -> None:
    """Keyspace names are spliced into CQL, so only plain identifiers are accepted."""
    if not keyspace.isidentifier():
        raise BenchError(f"--keyspace must be a plain identifier, got {keyspace!r}")


def lock_path(keyspace: str, directory: Path | None = None) -> Path:
    return (directory or Path(tempfile.gettempdir())) / f"pss-bench-{keyspace}.lock"


@contextlib.contextmanager
def keyspace_lock(keyspace: str, directory: Path | None = None) -> Iterator[None]:
    """One bench per keyspace on this machine: another would TRUNCATE the tables under it.

    The file stays behind: unlinking it on release would let a late opener lock an orphan inode.
    """
    with open(lock_path(keyspace, directory), "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(f"another bench is using keyspace {keyspace}; choose one with --keyspace") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_path(directory: Path, name: str) -> Path:
    """A daemon log of this bench process (pid in the name: concurrent benches never share one)."""
    return directory / "logs" / f"{name}-{os.getpid()}.log"


def free_port() -> int:
    """A loopback port nobody listens on right now (for tests; the CLI defaults to fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    keyspace: str
    port: int
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    source: Path = REPO  # the checkout whose code the daemon runs (another worktree for an A/B)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PSS_CASSANDRA_KEYSPACE=self.keyspace,
            PSS_SERVER_HOST=LOOPBACK,
            PSS_SERVER_PORT=str(self.port),
            PSS_CLOCK_NOW=DEMO_NOW,
            # Metrics on, as in production, on a port of its own: benches run several daemons at once.
            PSS_METRICS_PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        return env


class Daemon:
    """`python -m daemon serve` as a child process of the bench; only this process is ever signalled."""

    __slots__ = ("_log", "process", "ready_seconds", "spec")

    def __init__(self, spec: DaemonSpec, process: subprocess.Popen[bytes], log: Any) -> None:
        self.spec = spec
        self.process = process
        self.ready_seconds = 0.0
        self._log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, spec: DaemonSpec) -> Daemon:
        # Otherwise /readyz could answer from whoever holds the port while ours fails to bind.
        if port_in_use(spec.port):
            raise BenchError(f"port {spec.port} is already in use (another daemon or bench?); choose one with --port")
        daemon = await asyncio.to_thread(cls._spawn, spec)
        began = time.perf_counter()
        try:
            await daemon._wait_ready()
        except BaseException:
            await daemon.stop()
            raise
        daemon.ready_seconds = time.perf_counter() - began
        return daemon

    @classmethod
    def _spawn(cls, spec: DaemonSpec) -> Daemon:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(spec.log_path, "wb")  # noqa: SIM115 - closed by stop()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "serve"],
                cwd=spec.source,
                env=spec.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            log.close()
            raise
        return cls(spec, process, log)

    async def _wait_ready(self) -> None:
        """Poll /readyz: a child process offers nothing to await, so a bounded poll it is."""
        deadline = time.monotonic() + READY_TIMEOUT
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(f"daemon exited with {self.process.returncode}; log: {self.spec.log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.spec.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(READY_POLL)
        raise BenchError(f"daemon not ready within {READY_TIMEOUT:.0f}s; log: {self.spec.log_path}")

    def check_alive(self) -> None:
        """Raise when the daemon is gone: requests would go to nobody, or to whoever takes the port."""
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"the daemon exited during the bench (code {code}); log: {self.spec.log_path}")

    async def stop(self) -> int:
        """SIGTERM (the daemon drains its actors), then SIGKILL if it outlives the timeout."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    await asyncio.to_thread(self.process.wait, 10)
            return self.process.returncode
        finally:
            self._log.close()


@contextlib.asynccontextmanager
async def running_daemon(spec: DaemonSpec) -> AsyncIterator[Daemon]:
    daemon = await Daemon.start(spec)
    try:
        yield daemon
    finally:
        code = await daemon.stop()
        if code not in (0, -signal.SIGTERM):
            say(f"warning: daemon exited with {code}; log: {spec.log_path}")


def client_session(
    connections: int, timeout: float, headers: Mapping[str, str] | None = None
) -> aiohttp.ClientSession:
    """An HTTP client with one pooled connection per concurrent client (`headers` on every request)."""
    connector = aiohttp.TCPConnector(limit=max(1, connections))
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), headers=headers)
