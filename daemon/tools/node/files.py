"""What the node runs from: its directory layout, Maven pom, cassandra.yaml, logback.xml and JVM command line."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import NodeConfig

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
    # Where lib-<version> lives when it is shared: a cluster's nodes run the single node's jars. None = root.
    jars: Path | None = None

    @classmethod
    def of(cls, node: NodeConfig, jars: Path | None = None) -> NodePaths:
        # Absolute, because the JVM's cmdline is matched against it to recognise our own process.
        return cls(Path(node.dir).resolve(), node.version, jars)

    @property
    def lib(self) -> Path:
        return (self.jars or self.root) / f"lib-{self.version}"

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


@dataclass(frozen=True, slots=True)
class Ring:
    """A node's place among its peers: its cluster, the seeds it gossips with first, its one token.

    The default is a node alone: its own seed, token 0.
    """

    cluster_name: str = CLUSTER_NAME
    seeds: tuple[str, ...] = ()  # "host:storage_port" each; empty = the node itself
    token: int = 0


def render_cassandra_yaml(node: NodeConfig, ring: Ring | None = None) -> str:
    """Minimal config of a node, alone or in a ring; every key is a Cassandra 5.0 name (unknown keys are fatal)."""
    ring = ring or Ring()
    address = node.listen_address
    seeds = ",".join(ring.seeds) or f"{address}:{node.storage_port}"
    return f"""# Written by `python -m daemon node|cluster start` on every start; edit config.toml instead.
cluster_name: {ring.cluster_name}
# One token per node, computed up front (0 alone; evenly spaced in a cluster): skips the token-allocation path.
num_tokens: 1
initial_token: {ring.token}
# Every node is a seed that starts with its token: none streams data from the others when it joins (as ccm
# does). A node alone never bootstraps anyway.
auto_bootstrap: false
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
# periodic: a write is acknowledged before the commit log is fsynced (up to 10 s of writes can be
# lost if the machine, not just the process, dies). Fine for a local development/test node.
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
listen_address: {address}
rpc_address: {address}
storage_port: {node.storage_port}
native_transport_port: {node.native_port}
# Tests drop keyspaces often; snapshotting each drop would only fill the disk.
auto_snapshot: false
# Without this a 5.0 node runs in CASSANDRA_4 compatibility mode, lacking some 5.0 features.
storage_compatibility_mode: NONE
# The daemon packs rows of partitions that share their replicas into unlogged batches on purpose ([ingest]
# batching); at the default (10) the node warns about every such batch. The batch size thresholds stay at their
# defaults (warn 5 KiB, fail 50 KiB): [ingest] batch_bytes keeps below the warning.
unlogged_batch_across_partitions_warn_threshold: 100
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


def parse_heap(heap: str, key: str = "node.heap") -> str:
    """Validate a JVM size such as '1g' or '512m'; raise ValueError (naming the config `key`) otherwise."""
    if re.fullmatch(r"\d+[kKmMgG]?", heap.strip()) is None:
        raise ValueError(f"{key}: expected a JVM size such as 512m or 1g, got {heap!r}")
    return heap.strip()


def java_command(java: str, paths: NodePaths, heap: str, extra: Sequence[str] = ()) -> list[str]:
    """The JVM command line that runs CassandraDaemon in the foreground of its own session; `extra` options last."""
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
        # A single node has no gossip to settle and no reason to delay creating the superuser; a cluster's
        # readiness is judged from outside (CQL on every node, each seeing the others UP in its log).
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.superuser_setup_delay_ms=0",
        # JNA unpacks its native library here; /tmp may be noexec or shared.
        f"-Djava.io.tmpdir={paths.tmp}",
        # No cassandra.jmx.* property: JMX stays off, so nodes side by side never collide on port 7199.
        *extra,
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
