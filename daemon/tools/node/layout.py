"""A local cluster's shape, as ccm lays one out: node i on 127.0.0.i, the same ports everywhere, every node a
seed, one token each, spaced evenly over the Murmur3 ring."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import ClusterConfig, NodeConfig
from daemon.core.errors import CommandError
from daemon.tools.node.files import NodePaths, Ring, render_cassandra_yaml

# Not the single node's name: a node of one never gossips with the other by mistake.
CLUSTER_NAME = "pss-cluster"


def tokens(count: int) -> list[int]:
    """Murmur3 tokens spaced evenly over [-2**63, 2**63), computed up front as ccm does."""
    return [-(2**63) + i * 2**64 // count for i in range(count)]


def address(index: int) -> str:
    """Node i's address: every 127.0.0.x is loopback on Linux, so the nodes can share their ports."""
    return f"127.0.0.{index}"


@dataclass(frozen=True, slots=True)
class Member:
    """One node of the cluster: `node` holds its address, ports, heap and folder, as a single node's would."""

    index: int  # 1-based, as in `cluster kill 2`
    node: NodeConfig
    paths: NodePaths
    ring: Ring

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def address(self) -> str:
        return self.node.listen_address

    def cassandra_yaml(self) -> str:
        return render_cassandra_yaml(self.node, self.ring)


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    root: Path
    members: tuple[Member, ...]

    @classmethod
    def of(cls, cluster: ClusterConfig, node: NodeConfig, count: int) -> ClusterLayout:
        """`count` nodes under `cluster.dir`, running the jars of the single node `node` (fetched once, shared)."""
        root = Path(cluster.dir).resolve()
        jars = NodePaths.of(node).root
        seeds = tuple(f"{address(index)}:{cluster.storage_port}" for index in range(1, count + 1))
        members = []
        for index, token in enumerate(tokens(count), start=1):
            member = NodeConfig(
                dir=str(root / f"node{index}"),
                version=node.version,
                heap=cluster.heap,
                listen_address=address(index),
                native_port=cluster.native_port,
                storage_port=cluster.storage_port,
                start_timeout=cluster.start_timeout,
            )
            members.append(Member(index, member, NodePaths.of(member, jars), Ring(CLUSTER_NAME, seeds, token)))
        return cls(root, tuple(members))

    @property
    def lock_file(self) -> Path:
        return self.root / "cluster.lock"

    @property
    def size_file(self) -> Path:
        """How many nodes the data under `root` was made for: tokens are fixed at the first start."""
        return self.root / "nodes"

    @property
    def contact_points(self) -> tuple[str, ...]:
        return tuple(member.address for member in self.members)

    def member(self, index: int) -> Member:
        if not 1 <= index <= len(self.members):
            raise CommandError(f"no node {index}: the cluster has nodes 1..{len(self.members)}")
        return self.members[index - 1]


def recorded_size(cluster: ClusterConfig) -> int | None:
    """The node count written at the cluster's first start, if it was started before."""
    with contextlib.suppress(OSError, ValueError):
        return int((Path(cluster.dir).resolve() / "nodes").read_text().strip())
    return None


def layout_for(cluster: ClusterConfig, node: NodeConfig, nodes: int | None = None) -> ClusterLayout:
    """The cluster with `nodes` nodes (default: as first started, else `cluster.nodes`).

    A cluster keeps the node count it was first started with: its tokens are stored in its data.
    """
    recorded = recorded_size(cluster)
    if nodes is not None and recorded is not None and nodes != recorded:
        raise CommandError(
            f"{Path(cluster.dir).resolve()} holds a {recorded}-node cluster; to run {nodes} nodes, "
            "`cluster stop` it and delete that folder (or set PSS_CLUSTER_DIR)"
        )
    return ClusterLayout.of(cluster, node, nodes or recorded or cluster.nodes)
