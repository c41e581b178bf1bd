"""The local cluster's manager without a JVM: tokens, per-node files, gossip lines, port refusal, reuse and stop."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from daemon.core.config import ClusterConfig, ConfigError, NodeConfig, load_config
from daemon.core.config import replace as replace_config
from daemon.core.errors import CommandError
from daemon.tools.node.cluster import cluster_status, start_cluster, stop_cluster
from daemon.tools.node.files import MAIN_CLASS, NodePaths, java_command
from daemon.tools.node.gossip import GossipView
from daemon.tools.node.layout import CLUSTER_NAME, ClusterLayout, layout_for, tokens

ROOT = Path(__file__).resolve().parents[1]


def free_port_pair() -> tuple[int, int]:
    """Two ports free on 127.0.0.1..3 (the sockets stay open together so the ports differ)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(2)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        native, storage = (int(probe.getsockname()[1]) for probe in probes)
    return native, storage


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterConfig:
    native, storage = free_port_pair()
    return ClusterConfig(dir=str(tmp_path / "cluster"), nodes=3, native_port=native, storage_port=storage)


@pytest.fixture
def node(tmp_path: Path) -> NodeConfig:
    return NodeConfig(dir=str(tmp_path / "single"))


# --- tokens and the files of each node ---


def test_tokens_are_ccms_evenly_spaced_murmur3_tokens() -> None:
    assert tokens(1) == [-(2**63)]
    assert tokens(3) == [-9223372036854775808, -3074457345618258603, 3074457345618258602]
    for count in (2, 3, 5, 7, 254):
        spread = tokens(count)
        assert spread == sorted(set(spread)) and spread[0] == -(2**63) and spread[-1] < 2**63
        gaps = {b - a for a, b in itertools.pairwise(spread)}
        assert max(gaps) - min(gaps) <= 1  # even up to integer division


def test_each_node_gets_its_address_token_and_folder_and_all_share_seeds_and_ports(
    cluster: ClusterConfig, node: NodeConfig
) -> None:
    layout = ClusterLayout.of(cluster, node, 3)
    rendered = [yaml.safe_load(member.cassandra_yaml()) for member in layout.members]
    seeds = ",".join(f"127.0.0.{i}:{cluster.storage_port}" for i in (1, 2, 3))
    for index, (member, conf) in enumerate(zip(layout.members, rendered, strict=True), start=1):
        assert member.name == f"node{index}" and member.address == f"127.0.0.{index}"
        assert conf["listen_address"] == conf["rpc_address"] == f"127.0.0.{index}"
        assert conf["initial_token"] == tokens(3)[index - 1] and conf["num_tokens"] == 1
        assert conf["auto_bootstrap"] is False
        assert conf["cluster_name"] == CLUSTER_NAME
        assert conf["seed_provider"][0]["parameters"][0]["seeds"] == seeds  # every node a seed
        assert (conf["native_transport_port"], conf["storage_port"]) == (cluster.native_port, cluster.storage_port)
        assert member.paths.root == Path(cluster.dir).resolve() / f"node{index}"
    assert len({member.paths.data for member in layout.members}) == 3
    assert layout.contact_points == ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def test_nodes_run_the_single_nodes_jars_with_their_own_heap_and_data(cluster: ClusterConfig, node: NodeConfig) -> None:
    single = NodePaths.of(node)
    for member in ClusterLayout.of(cluster, node, 3).members:
        assert member.paths.lib == single.lib  # fetched once, by whichever start comes first
        command = java_command("java", member.paths, cluster.heap)
        assert {"-Xms512m", "-Xmx512m", f"-Dcassandra.storagedir={member.paths.data}"} <= set(command)
        assert command[command.index("-cp") + 1] == f"{single.lib}/*"
        assert not [arg for arg in command if "jmx" in arg.lower() and arg.startswith("-D")]  # no JMX port to clash


def test_a_cluster_keeps_the_node_count_it_was_first_started_with(cluster: ClusterConfig, node: NodeConfig) -> None:
    layout = layout_for(cluster, node, 3)
    layout.root.mkdir(parents=True)
    layout.size_file.write_text("3\n")
    assert len(layout_for(cluster, node).members) == 3
    assert len(layout_for(replace_config(cluster, nodes=5), node).members) == 3  # status, stop: as recorded
    with pytest.raises(CommandError, match=r"holds a 3-node cluster; to run 4 nodes, `cluster stop` it and delete"):
        layout_for(cluster, node, 4)
    with pytest.raises(CommandError, match=r"^no node 4: the cluster has nodes 1\.\.3$"):
        layout.member(4)


# --- configuration ---


def test_cluster_defaults_differ_from_the_single_nodes_ports() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert (config.cluster.nodes, config.cluster.heap) == (3, "512m")
    assert config.cluster.native_port != config.node.native_port
    assert config.cluster.storage_port != config.node.storage_port
    overridden = load_config(ROOT / "config.toml", environ={"PSS_CLUSTER_NATIVE_PORT": "19043"})
    assert overridden.cluster.native_port == 19043


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PSS_CLUSTER_NODES", "0", "cluster.nodes: must be 1..254"),
        ("PSS_CLUSTER_NODES", "255", "cluster.nodes: must be 1..254"),
        ("PSS_CLUSTER_NATIVE_PORT", "70000", "cluster.native_port: must be 1..65535"),
        ("PSS_CLUSTER_STORAGE_PORT", "9043", "cluster.storage_port: must differ from cluster.native_port"),
        ("PSS_CLUSTER_START_TIMEOUT", "0", "cluster.start_timeout: must be positive"),
    ],
)
def test_cluster_range_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "config.toml", environ={name: value})
    assert str(error.value).startswith(message)


# --- what a node's log says about its peers ---


def test_gossip_view_follows_up_and_down_lines_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "system.log"
    log.write_text(
        "INFO  [GossipStage:1] 2026-12-01 03:00:01,000 Gossiper.java:1400 - InetAddress /127.0.0.2:7001 is now UP\n"
        "INFO  [main] 2026-12-01 03:00:01,100 StorageService.java:1 - Node /127.0.0.3:7001 state jump to NORMAL\n"
        "INFO  [GossipStage:1] 2026-12-01 03:00:02,000 Gossiper.java:1400 - InetAddress localhost/127.0.0.3:7001 is"
    )
    view = GossipView(log)
    assert view.refresh() == {"127.0.0.2": True}  # the half-written line waits for its end
    with log.open("a") as handle:
        handle.write(" now UP\n... InetAddress /127.0.0.2:7001 is now DOWN\n")
    assert view.refresh() == {"127.0.0.2": False, "127.0.0.3": True}
    assert view.sees_up("127.0.0.3") and not view.sees_up("127.0.0.2") and not view.sees_up("127.0.0.9")
    view.forget(["127.0.0.3"])
    assert not view.sees_up("127.0.0.3")
    log.write_text("... InetAddress /127.0.0.3:7001 is now UP\n")  # a new run's shorter log: read from its start
    assert view.refresh() == {"127.0.0.3": True}
    assert GossipView(tmp_path / "missing.log").refresh() == {}


# --- starting, reusing and stopping, with stand-ins for the JVMs ---


def test_start_refuses_in_one_line_when_a_nodes_port_is_taken(cluster: ClusterConfig, node: NodeConfig) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", cluster.native_port))
        taken.listen()
        with pytest.raises(CommandError) as failure:
            start_cluster(cluster, node, say=lambda line: None)
    assert str(failure.value) == (
        f"port {cluster.native_port} (cluster.native_port) on 127.0.0.2 is already in use by another process; "
        "stop it or set PSS_CLUSTER_NATIVE_PORT"
    )
    layout = layout_for(cluster, node)
    assert not [member for member in layout.members if member.paths.pid_file.exists()]  # nothing launched
    assert not NodePaths.of(node).lib.exists()  # nor fetched


def test_cli_refuses_a_taken_storage_port_in_one_line(cluster: ClusterConfig) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.3", cluster.storage_port))
        taken.listen()
        env = {
            **os.environ,
            "PSS_CLUSTER_DIR": cluster.dir,
            "PSS_CLUSTER_NATIVE_PORT": str(cluster.native_port),
            "PSS_CLUSTER_STORAGE_PORT": str(cluster.storage_port),
        }
        result = subprocess.run(
            [sys.executable, "-m", "daemon", "cluster", "start"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    expected = (
        f"error: port {cluster.storage_port} (cluster.storage_port) on 127.0.0.3 is already in use by another "
        "process; stop it or set PSS_CLUSTER_STORAGE_PORT"
    )
    assert result.stderr.strip().splitlines() == [expected]


@pytest.fixture
def running_stand_ins(cluster: ClusterConfig, node: NodeConfig) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Three sleeping processes that look like the cluster's JVMs: our command line, CQL listening, peers UP in the
    logs."""
    layout = layout_for(cluster, node, 3)
    with contextlib.ExitStack() as stack:
        processes = []
        for member in layout.members:
            member.paths.logs.mkdir(parents=True)
            peers = [peer for peer in layout.members if peer is not member]
            member.paths.system_log.write_text(
                "".join(f"INFO - InetAddress /{peer.address}:{cluster.storage_port} is now UP\n" for peer in peers)
            )
            cql = stack.enter_context(socket.socket())
            cql.bind((member.address, cluster.native_port))
            cql.listen()
            code = "import time; print('up', flush=True); time.sleep(60)"
            argv = [sys.executable, "-c", code, MAIN_CLASS, f"-Dcassandra.storagedir={member.paths.data}"]
            process = stack.enter_context(subprocess.Popen(argv, stdout=subprocess.PIPE))
            assert process.stdout is not None and process.stdout.readline() == b"up\n"
            processes.append(process)
        yield processes
        for process in processes:
            process.kill()


def test_start_reuses_a_ready_cluster_and_stop_terminates_every_node(
    cluster: ClusterConfig, node: NodeConfig, running_stand_ins: list[subprocess.Popen[bytes]]
) -> None:
    said: list[str] = []
    info = start_cluster(cluster, node, say=said.append)
    assert (info.started, info.seconds) == ((), 0.0)
    assert said == [f"node{i} serving CQL after 0 s" for i in (1, 2, 3)] + [
        "node1 sees node2, node3 UP after 0 s",
        "node2 sees node1, node3 UP after 0 s",
        "node3 sees node1, node2 UP after 0 s",
    ]
    statuses = cluster_status(cluster, node)
    assert [status.pid for status in statuses] == [process.pid for process in running_stand_ins]
    assert all(status.cql_ready and all(status.peers.values()) and len(status.peers) == 2 for status in statuses)

    assert stop_cluster(cluster, node, say=said.append) == 3
    assert all(process.wait(timeout=5) is not None for process in running_stand_ins)
    assert said[-1].startswith("stopped 3 nodes in ")
    assert stop_cluster(cluster, node, say=said.append) == 0
    assert said[-1] == "no node of the cluster is running"
