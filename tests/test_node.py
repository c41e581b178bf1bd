"""The local Cassandra node manager: rendered files, probes, failure paths, and the node `make test` runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from daemon.core.config import NodeConfig, load_config
from daemon.core.config import replace as replace_config
from daemon.core.errors import CommandError
from daemon.tools.node.files import (
    MAIN_CLASS,
    NodePaths,
    java_command,
    parse_heap,
    parse_java_major,
    render_cassandra_yaml,
    render_logback_xml,
    render_pom,
    tail_lines,
)
from daemon.tools.node.manager import node_status, start_node, stop_node
from daemon.tools.node.process import NodeError, port_in_use, running_pid

ROOT = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on; the sockets stay open together so the ports are distinct."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@pytest.fixture
def node(tmp_path: Path) -> NodeConfig:
    """A node config of its own (dir and ports) so tests never touch the real node."""
    native, storage = free_ports(2)
    return NodeConfig(dir=str(tmp_path / "node"), native_port=native, storage_port=storage, start_timeout=60.0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.fixture
def fake_node(node: NodeConfig) -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping process whose command line looks like our CassandraDaemon for `node`."""
    paths = NodePaths.of(node)
    paths.root.mkdir(parents=True)
    code = "import time; print('up', flush=True); time.sleep(60)"
    argv = [sys.executable, "-c", code, MAIN_CLASS, f"-Dcassandra.storagedir={paths.data}"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        # Popen can return before the kernel has filled in the new argv (/proc/PID/cmdline is
        # briefly empty after a vfork'ed exec); a line from the child proves it is running.
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        yield proc
        proc.kill()


def test_cassandra_yaml_has_the_required_keys_and_our_ports(node: NodeConfig) -> None:
    rendered = yaml.safe_load(render_cassandra_yaml(node))
    assert rendered["native_transport_port"] == node.native_port
    assert rendered["storage_port"] == node.storage_port
    assert rendered["listen_address"] == rendered["rpc_address"] == "127.0.0.1"
    assert rendered["seed_provider"][0]["parameters"][0]["seeds"] == f"127.0.0.1:{node.storage_port}"
    # Keys without defaults: Cassandra refuses to start without them.
    for key in ("partitioner", "endpoint_snitch", "commitlog_sync", "commitlog_sync_period", "seed_provider"):
        assert key in rendered
    assert rendered["storage_compatibility_mode"] == "NONE"
    assert rendered["unlogged_batch_across_partitions_warn_threshold"] >= 40  # [ingest] batch_statements
    # 4.x names are fatal in 5.0 ("Invalid yaml").
    assert not [key for key in rendered if key.endswith("_in_ms") or key == "start_rpc"]


def test_logback_writes_system_log_at_info() -> None:
    root = ET.fromstring(render_logback_xml())
    assert root.findtext("appender/file") == "${cassandra.logdir}/system.log"
    assert root.find("root").get("level") == "INFO"  # type: ignore[union-attr]


def test_pom_asks_for_cassandra_all_of_the_configured_version() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    dependency = ET.fromstring(render_pom("5.0.8")).find("m:dependencies/m:dependency", ns)
    assert dependency is not None
    assert dependency.findtext("m:artifactId", namespaces=ns) == "cassandra-all"
    assert dependency.findtext("m:version", namespaces=ns) == "5.0.8"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("bash: java: command not found", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_parse_heap() -> None:
    assert parse_heap("1g") == "1g"
    assert parse_heap(" 512m ") == "512m"
    with pytest.raises(ValueError, match="node.heap"):
        parse_heap("1 GB")


def test_java_command_uses_the_jamm_jar_found_in_lib(node: NodeConfig) -> None:
    paths = NodePaths.of(node)
    paths.lib.mkdir(parents=True)
    assert not [arg for arg in java_command("java", paths, "1g") if arg.startswith("-javaagent")]
    (paths.lib / "jamm-0.4.1.jar").touch()
    command = java_command("java", paths, "1g")
    assert f"-javaagent:{paths.lib / 'jamm-0.4.1.jar'}" in command
    assert command[-1] == MAIN_CLASS
    assert f"-Dcassandra.config=file://{paths.conf}/cassandra.yaml" in command
    assert {"-Xms1g", "-Xmx1g", "--add-opens=java.base/java.lang=ALL-UNNAMED"} <= set(command)


def test_port_in_use_sees_a_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert port_in_use("127.0.0.1", port)
    listener.close()
    assert not port_in_use("127.0.0.1", port)


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "system.log"
    log.write_text("".join(f"line {n}\n" for n in range(10_000)))
    assert tail_lines(log, 3) == ["line 9997", "line 9998", "line 9999"]
    assert tail_lines(tmp_path / "missing.log", 3) == []


def test_status_finds_our_process_with_or_without_pid_file(
    node: NodeConfig, fake_node: subprocess.Popen[bytes]
) -> None:
    paths = NodePaths.of(node)
    paths.pid_file.write_text(f"{fake_node.pid}\n")
    status = node_status(node)
    assert (status.running, status.pid, status.cql_ready) == (True, fake_node.pid, False)
    paths.pid_file.unlink()
    assert running_pid(paths) == fake_node.pid  # found by its command line


def test_pid_file_of_another_process_is_not_our_node(node: NodeConfig) -> None:
    paths = NodePaths.of(node)
    paths.root.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a CassandraDaemon
    assert not node_status(node).running
    paths.pid_file.write_text("not a pid\n")
    assert not node_status(node).running


def test_start_reuses_our_running_node(
    node: NodeConfig, fake_node: subprocess.Popen[bytes], listener: socket.socket
) -> None:
    node = replace_config(node, native_port=listener.getsockname()[1])
    info = start_node(node, say=lambda line: None)
    assert (info.pid, info.reused) == (fake_node.pid, True)
    assert NodePaths.of(node).pid_file.read_text().strip() == str(fake_node.pid)


def test_stop_terminates_our_node_and_is_idempotent(node: NodeConfig, fake_node: subprocess.Popen[bytes]) -> None:
    said: list[str] = []
    assert stop_node(node, say=said.append)
    assert fake_node.wait(timeout=5) is not None
    assert not NodePaths.of(node).pid_file.exists()
    assert not stop_node(node, say=said.append)
    assert said[-1] == "not running"


@pytest.mark.parametrize("key", ["native_port", "storage_port"])
def test_start_fails_at_once_when_a_port_is_taken(node: NodeConfig, listener: socket.socket, key: str) -> None:
    if shutil.which("java") is None:
        pytest.skip("needs java (the port check comes after the java check)")
    port = listener.getsockname()[1]
    with pytest.raises(CommandError) as failure:
        start_node(replace_config(node, **{key: port}), say=lambda line: None)
    message = str(failure.value)
    assert "\n" not in message
    assert f"port {port} (node.{key})" in message
    assert not NodePaths.of(node).lib.exists()  # failed before fetching anything


def test_start_without_java_says_so_in_one_line(
    node: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(CommandError, match=r"^java not found: install OpenJDK 17$"):
        start_node(node, say=lambda line: None)


def test_start_rejects_an_unsupported_java(node: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java = tmp_path / "bin" / "java"
    fake_java.parent.mkdir()
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"21.0.2\" 2024-01-16' >&2\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_java.parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(CommandError, match=r"version 21; Cassandra 5\.0\.8 needs Java 11 or 17"):
        start_node(node, say=lambda line: None)


def test_start_without_maven_says_so_in_one_line(
    node: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("needs java")
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(only_java))
    with pytest.raises(CommandError, match=r"^mvn not found: install Maven"):
        start_node(node, say=lambda line: None)


def test_cli_prints_one_error_line_without_traceback(node: NodeConfig, listener: socket.socket) -> None:
    if shutil.which("java") is None:
        pytest.skip("needs java")
    port = listener.getsockname()[1]
    env = {**os.environ, "PSS_NODE_DIR": node.dir, "PSS_NODE_NATIVE_PORT": str(port)}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "node", "start"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    expected = (
        f"error: port {port} (node.native_port) on 127.0.0.1 is already in use by another process; "
        "stop it or set PSS_NODE_NATIVE_PORT"
    )
    assert result.stderr.strip().splitlines() == [expected]


def _real_node() -> NodeConfig:
    node = load_config(ROOT / "config.toml", environ={}).node
    return replace_config(node, dir=str(ROOT / node.dir))


@pytest.fixture
def node_with_jars(node: NodeConfig) -> NodeConfig:
    """A private node dir sharing the real node's fetched jars (read-only use), so no Maven run."""
    lib = NodePaths.of(_real_node()).lib
    if not (lib / ".complete").exists():
        pytest.fail(f"{lib} missing: run `make node` first")
    paths = NodePaths.of(node)
    paths.root.mkdir(parents=True)
    paths.lib.symlink_to(lib)
    return node


@pytest.mark.cassandra
def test_the_node_make_test_started_is_running() -> None:
    status = node_status(_real_node())
    assert status.running, "the local node is not running: start it with `make node`"
    assert status.pid is not None and status.cql_ready
    assert status.rss_bytes is not None and status.rss_bytes > 0


@pytest.mark.cassandra
def test_a_jvm_that_dies_at_start_is_reported_with_its_log(node_with_jars: NodeConfig) -> None:
    with pytest.raises(NodeError) as failure:
        start_node(replace_config(node_with_jars, heap="1k"), say=lambda line: None)  # JVM refuses a 1 KiB heap
    assert str(failure.value).startswith("Cassandra exited during startup with code 1")
    assert failure.value.source.endswith("stdout.log")
    assert any("heap" in line.lower() for line in failure.value.details)
    assert not NodePaths.of(node_with_jars).pid_file.exists()


@pytest.mark.cassandra
def test_a_start_timeout_stops_the_half_started_node(node_with_jars: NodeConfig) -> None:
    with pytest.raises(NodeError, match=r"did not accept CQL on 127\.0\.0\.1:\d+ within 2s"):
        start_node(replace_config(node_with_jars, start_timeout=2.0), say=lambda line: None)
    paths = NodePaths.of(node_with_jars)
    assert running_pid(paths) is None
    assert not paths.pid_file.exists()
