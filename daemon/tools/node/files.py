"""Helpers of the node manager: the node's files and JVM flags, its Java/Maven prerequisites, process probes."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import NodeConfig
from daemon.core.errors import CommandError

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
CLUSTER_NAME = "pss-local"
# Plugin version pinned so a fetch is reproducible (an unpinned plugin floats with Maven's defaults).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
LOG_TAIL = 20  # lines of a log shown when something fails
SUPPORTED_JAVA = (11, 17)  # Cassandra 5.0 runs on these only; 18+ is unsupported, 24+ cannot boot.

Say = Callable[[str], None]  # where progress lines go (print in the CLI, a list in tests)

# Cassandra reflects into JDK internals; the set comes whole from upstream conf/jvm17-server.options:
# dropping one makes it die early with IllegalAccessException.
_EXPORTS = (
    "java.base/jdk.internal.misc",
    "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
    "java.sql/java.sql",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security",
)
_OPENS = tuple(
    f"java.base/{package}"
    for package in (
        "java.lang.module",
        "jdk.internal.loader",
        "jdk.internal.ref",
        "jdk.internal.reflect",
        "jdk.internal.math",
        "jdk.internal.module",
        "jdk.internal.util.jar",
        "sun.nio.ch",
        "java.io",
        "java.lang.reflect",
        "java.lang",
        "java.util",
        "java.nio",
    )
) + ("jdk.management/com.sun.management.internal",)


# --- What the node runs from: its directory layout, config files and JVM command line ---


@dataclass(frozen=True, slots=True)
class NodePaths:
    """Where one node keeps its jars, config, data and logs; every path absolute."""

    root: Path
    version: str

    @classmethod
    def of(cls, node: NodeConfig) -> NodePaths:
        # Absolute, because the JVM's cmdline is matched against it to recognise our own process.
        return cls(Path(node.dir).resolve(), node.version)

    @property
    def lib(self) -> Path:
        return self.root / f"lib-{self.version}"

    @property
    def lib_marker(self) -> Path:
        return self.lib / ".complete"

    @property
    def maven(self) -> Path:
        return self.root / "maven"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def pid_file(self) -> Path:
        return self.root / "cassandra.pid"

    @property
    def lock_file(self) -> Path:
        return self.root / "node.lock"

    @property
    def system_log(self) -> Path:
        return self.logs / "system.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"


def render_pom(version: str) -> str:
    """A throwaway pom whose only purpose is letting Maven resolve cassandra-all's runtime jars."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pss</groupId>
  <artifactId>cassandra-node</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def maven_command(mvn: str, pom: Path, output_dir: Path) -> list[str]:
    return [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={output_dir}",
    ]


def render_cassandra_yaml(node: NodeConfig) -> str:
    """Minimal single-node config; every key here is a Cassandra 5.0 name (unknown keys are fatal)."""
    address = node.listen_address
    return f"""# Written by `python -m daemon node start` on every start; edit config.toml [node] instead.
cluster_name: {CLUSTER_NAME}
# One token at 0: skips the token-allocation path, which a single node does not need.
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
# periodic: a write is acknowledged before the commit log is fsynced (up to 10 s of writes can be
# lost if the machine, not just the process, dies). Fine for a local development/test node.
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{address}:{node.storage_port}"
listen_address: {address}
rpc_address: {address}
storage_port: {node.storage_port}
native_transport_port: {node.native_port}
# Tests drop keyspaces often; snapshotting each drop would only fill the disk.
auto_snapshot: false
# Without this a 5.0 node runs in CASSANDRA_4 compatibility mode, lacking some 5.0 features.
storage_compatibility_mode: NONE
"""


def render_logback_xml() -> str:
    """File-only logging at INFO: without a config logback prints DEBUG to the console."""
    return """<?xml version="1.0" encoding="UTF-8"?>
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
"""


def parse_java_major(version_output: str) -> int | None:
    """Major version from `java -version` output: '"17.0.15"' -> 17, '"1.8.0_292"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report themselves as 1.x.
    return int(match.group(2) or 0) if major == 1 else major


def parse_heap(heap: str) -> str:
    """Validate a JVM size such as '1g' or '512m'; raise ValueError otherwise."""
    if re.fullmatch(r"\d+[kKmMgG]?", heap.strip()) is None:
        raise ValueError(f"node.heap: expected a JVM size such as 512m or 1g, got {heap!r}")
    return heap.strip()


def java_command(java: str, paths: NodePaths, heap: str) -> list[str]:
    """The JVM command line that runs CassandraDaemon in the foreground of its own session."""
    jamm = sorted(paths.lib.glob("jamm-*.jar"))
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-Xss256k",
        "-XX:+UseG1GC",
        *(f"--add-exports={module}=ALL-UNNAMED" for module in _EXPORTS),
        *(f"--add-opens={module}=ALL-UNNAMED" for module in _OPENS),
        "-Djdk.attach.allowAttachSelf=true",
        "-Dio.netty.tryReflectionSetAccessible=true",
        "-Djava.net.preferIPv4Stack=true",
        "-Dchronicle.analytics.disable=true",
        # A JVM crash report would otherwise land in the working directory.
        f"-XX:ErrorFile={paths.logs}/hs_err_pid%p.log",
        # jamm measures object sizes for memtable accounting; optional in 5.0, so only if fetched.
        *(f"-javaagent:{jar}" for jar in jamm[-1:]),
        f"-Dcassandra.config={(paths.conf / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={paths.data}",
        # Without it Cassandra closes stdout/stderr after start and early errors vanish.
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.logdir={paths.logs}",
        f"-Dlogback.configurationFile={paths.conf / 'logback.xml'}",
        # A single node has no gossip to settle and no reason to delay creating the superuser.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.superuser_setup_delay_ms=0",
        # JNA unpacks its native library here; /tmp may be noexec or shared.
        f"-Djava.io.tmpdir={paths.tmp}",
        "-cp",
        f"{paths.lib}/*",
        MAIN_CLASS,
    ]


def is_our_cmdline(cmdline: list[str], paths: NodePaths) -> bool:
    """True when a process's argv is a CassandraDaemon using this node's data directory."""
    return MAIN_CLASS in cmdline and f"-Dcassandra.storagedir={paths.data}" in cmdline


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a text file, reading only its end (system.log can grow large)."""
    if count <= 0 or not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        block = 8192
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


# --- What it needs and how it is watched: Java, Maven, its process and its ports ---


class NodeError(CommandError):
    """A node command failed; `details` (the tail of a log) are shown above the one-line reason."""

    def __init__(self, reason: str, details: Sequence[str] = (), source: str = "") -> None:
        super().__init__(reason)
        self.details = list(details)
        self.source = source


def port_in_use(host: str, port: int) -> bool:
    """True when some process holds host:port (bound or listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the JVM's server sockets: a just-stopped node's TIME_WAIT connections must not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CommandError(f"node.listen_address {host} is not an address of this machine") from None
            raise
    return False


def cql_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def reap(pid: int) -> int | None:
    """Exit code of `pid` if it is our child and has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done == pid else None


def alive(pid: int) -> bool:
    if reap(pid) is not None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie still answers kill(pid, 0); its state letter follows the ")" ending the command name.
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def running_pid(paths: NodePaths) -> int | None:
    """Our JVM: the pid file's process if it is ours, else any CassandraDaemon using our data dir.

    Matching the command line (not just the pid) guards against pid reuse and a lost pid file.
    """

    def candidates() -> Iterator[int]:
        with contextlib.suppress(OSError, ValueError):
            yield int(paths.pid_file.read_text().strip())
        yield from (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())

    return next((pid for pid in candidates() if is_our_cmdline(cmdline(pid), paths) and alive(pid)), None)


def rss_bytes(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def find_java(version: str) -> str:
    """Path of a Java 11/17 runtime (JAVA_HOME first, then PATH); one-line CommandError otherwise."""
    java_home = os.environ.get("JAVA_HOME", "")
    home_java = Path(java_home, "bin", "java")
    java = str(home_java) if java_home and home_java.is_file() else shutil.which("java")
    if java is None:
        raise CommandError("java not found: install OpenJDK 17")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"java at {java} does not run ({exc}): install OpenJDK 17") from None
    major = parse_java_major(result.stderr + result.stdout)
    if major not in SUPPORTED_JAVA:
        raise CommandError(
            f"java at {java} is version {major or 'unknown'}; Cassandra {version} needs Java 11 or 17: "
            "install OpenJDK 17 (or point JAVA_HOME at it)"
        )
    return java


def ensure_jars(paths: NodePaths, say: Say) -> None:
    """Fetch cassandra-all and its runtime dependencies once; ~/.m2 makes later fetches offline-fast."""
    if paths.lib_marker.exists():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise CommandError(f"mvn not found: install Maven (needed once to fetch the Cassandra {paths.version} jars)")
    paths.maven.mkdir(parents=True, exist_ok=True)
    pom = paths.maven / "pom.xml"
    pom.write_text(render_pom(paths.version), encoding="utf-8")
    # Fetch next to the final dir and rename: an interrupted fetch never looks complete.
    partial = paths.root / f"lib-{paths.version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    say(f"fetching Cassandra {paths.version} jars with Maven (first start only)...")
    started = time.monotonic()
    result = subprocess.run(maven_command(mvn, pom, partial), capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(partial.glob("cassandra-all-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()
        raise NodeError(
            f"Maven could not fetch cassandra-all {paths.version} (exit code {result.returncode})",
            output[-LOG_TAIL:],
            "mvn output",
        )
    (partial / ".complete").write_text(f"cassandra-all {paths.version}\n", encoding="utf-8")
    shutil.rmtree(paths.lib, ignore_errors=True)
    partial.rename(paths.lib)
    jars = list(paths.lib.glob("*.jar"))
    size = sum(jar.stat().st_size for jar in jars) / 1e6
    say(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.1f}s")


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL; True when SIGKILL was needed."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive(pid):
            return sig == signal.SIGKILL
    raise CommandError(f"Cassandra (pid {pid}) survived SIGKILL")
