"""A local multi-node Cassandra run from the single node's jars, as ccm runs one: all nodes started together,
ready once every node serves CQL and sees every other UP; stop = SIGTERM, kill = SIGKILL."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from daemon.core.config import ClusterConfig, NodeConfig
from daemon.core.errors import CommandError
from daemon.tools.node.files import NodePaths, Say, parse_heap
from daemon.tools.node.gossip import GossipView
from daemon.tools.node.layout import ClusterLayout, Member, layout_for
from daemon.tools.node.manager import STOP_TIMEOUT, failure_tail, launch, start_lock
from daemon.tools.node.process import (
    NodeError,
    alive,
    cql_answers,
    ensure_jars,
    find_java,
    port_in_use,
    reap,
    running_pid,
    signal_and_wait,
    terminate_all,
)
from daemon.tools.probes import rss_bytes

NOTE_EVERY = 15.0  # seconds between "still waiting" lines
# Only the quick JIT compiler: several JVMs starting at once on a small machine spend far less CPU compiling.
# Measured here (3 fresh nodes, 2 shared cores): ready in 15-24 s instead of 29-48 s, the test keyspace's 9
# statements in 10-12 s instead of 15-23 s. Not -Dcassandra.unsafesystem (system tables left unflushed): a node
# SIGKILLed and restarted with it answered INCOMPATIBLE_SCHEMA for the keyspace created just before the kill.
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    layout: ClusterLayout
    started: tuple[int, ...]  # the nodes this call launched; the others were running already
    seconds: float  # first launch to ready; 0 when every node was running


@dataclass(frozen=True, slots=True)
class MemberStatus:
    member: Member
    pid: int | None
    rss_bytes: int | None
    cql_ready: bool
    peers: dict[str, bool]  # its latest view from its log: address -> UP?
    foreign_port: int | None  # a port of this node held by another process while it is down


def _say(line: str) -> None:
    print(line, flush=True)


def _pids(layout: ClusterLayout) -> dict[int, int | None]:
    return {member.index: running_pid(member.paths) for member in layout.members}


def start_cluster(cluster: ClusterConfig, node: NodeConfig, say: Say = _say) -> ClusterInfo:
    """Start the `cluster.nodes` nodes that are not running, all at once; return when the whole cluster is ready."""
    layout = layout_for(cluster, node, cluster.nodes)
    layout.root.mkdir(parents=True, exist_ok=True)
    with start_lock(layout.lock_file, say, "cluster start"):
        down = [member for member, pid in zip(layout.members, _pids(layout).values(), strict=True) if pid is None]
        everyone = [member.index for member in layout.members]
        pairs = {(observer, peer) for observer in everyone for peer in everyone if observer != peer}
        started = time.monotonic()
        launched = _start(layout, cluster, node, down, everyone, pairs, say)
        return ClusterInfo(layout, tuple(launched), time.monotonic() - started if launched else 0.0)


def start_member(cluster: ClusterConfig, node: NodeConfig, index: int, say: Say = _say) -> float:
    """(Re)start one node; return the seconds until it served CQL and it and its running peers saw each other UP."""
    layout = layout_for(cluster, node)
    member = layout.member(index)
    with start_lock(layout.lock_file, say, "cluster start"):
        pids = _pids(layout)
        if pids[index] is not None:
            say(f"{member.name} is already running (pid {pids[index]})")
        peers = [peer for peer, pid in pids.items() if peer != index and pid is not None]
        pairs = {(index, peer) for peer in peers} | {(peer, index) for peer in peers}
        started = time.monotonic()
        _start(layout, cluster, node, [member] if pids[index] is None else [], [index], pairs, say)
        return time.monotonic() - started


def _start(
    layout: ClusterLayout,
    cluster: ClusterConfig,
    node: NodeConfig,
    down: list[Member],
    serving: list[int],
    pairs: set[tuple[int, int]],
    say: Say,
) -> dict[int, int]:
    """Launch the `down` nodes; wait until `serving` serve CQL and each (observer, peer) pair sees the peer UP."""
    # A running node's view so far counts, except about the nodes being launched: a peer may not have noticed
    # that a node was killed yet, so only an UP line logged after its relaunch shows that it is back.
    views: dict[int, GossipView] = {}
    for observer in sorted({observer for observer, _ in pairs} - {member.index for member in down}):
        views[observer] = GossipView(layout.member(observer).paths.system_log)
        views[observer].refresh()
        views[observer].forget(member.address for member in down)
    started = time.monotonic()
    launched = _launch(layout, down, cluster, node, say)
    views.update({index: GossipView(layout.member(index).paths.system_log) for index in launched})
    try:
        _wait_ready(layout, cluster, launched, views, set(serving), pairs, started, say)
    except BaseException:
        # Never leave a half-started node holding its ports.
        terminate_all(list(launched.values()), 10.0)
        for index in launched:
            layout.member(index).paths.pid_file.unlink(missing_ok=True)
        raise
    return launched


def stop_cluster(cluster: ClusterConfig, node: NodeConfig, say: Say = _say) -> int:
    """SIGTERM every running node at once, SIGKILL those still running after STOP_TIMEOUT; returns how many."""
    layout = layout_for(cluster, node)
    running = {index: pid for index, pid in _pids(layout).items() if pid is not None}
    if not running:
        say("no node of the cluster is running")
        return 0
    say(f"stopping {', '.join(f'node{index} (pid {pid})' for index, pid in running.items())}...")
    started = time.monotonic()
    killed = terminate_all(list(running.values()), STOP_TIMEOUT)
    for index in running:
        layout.member(index).paths.pid_file.unlink(missing_ok=True)
    note = f" (SIGKILL after {STOP_TIMEOUT:.0f}s: pid {', '.join(map(str, killed))})" if killed else ""
    say(f"stopped {len(running)} nodes in {time.monotonic() - started:.1f}s{note}")
    return len(running)


def stop_member(cluster: ClusterConfig, node: NodeConfig, index: int, say: Say = _say) -> bool:
    """SIGTERM one node (it announces its shutdown: peers see it DOWN at once); False if it was not running."""
    return _signal_member(cluster, node, index, signal.SIGTERM, say)


def kill_member(cluster: ClusterConfig, node: NodeConfig, index: int, say: Say = _say) -> bool:
    """SIGKILL one node, as a crash would (peers see it DOWN only when their failure detector convicts it)."""
    return _signal_member(cluster, node, index, signal.SIGKILL, say)


def _signal_member(cluster: ClusterConfig, node: NodeConfig, index: int, sig: signal.Signals, say: Say) -> bool:
    member = layout_for(cluster, node).member(index)
    pid = running_pid(member.paths)
    if pid is None:
        say(f"{member.name} is not running")
        return False
    started = time.monotonic()
    if sig == signal.SIGKILL:
        signal_and_wait([pid], sig, 10.0)
    elif terminate_all([pid], STOP_TIMEOUT):
        say(f"{member.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s: SIGKILLed")
    member.paths.pid_file.unlink(missing_ok=True)
    how = "killed" if sig == signal.SIGKILL else "stopped"
    say(f"{member.name} (pid {pid}) {how} in {time.monotonic() - started:.1f}s")
    return True


def cluster_status(cluster: ClusterConfig, node: NodeConfig) -> list[MemberStatus]:
    layout = layout_for(cluster, node)
    statuses = []
    for member, pid in zip(layout.members, _pids(layout).values(), strict=True):
        if pid is None:
            ports = (member.node.native_port, member.node.storage_port)
            foreign = next((port for port in ports if port_in_use(member.address, port)), None)
            statuses.append(MemberStatus(member, None, None, False, {}, foreign))
            continue
        peers = dict(GossipView(member.paths.system_log).refresh())
        ready = cql_answers(member.address, member.node.native_port)
        statuses.append(MemberStatus(member, pid, rss_bytes(pid), ready, peers, None))
    return statuses


def _launch(
    layout: ClusterLayout, members: list[Member], cluster: ClusterConfig, node: NodeConfig, say: Say
) -> dict[int, int]:
    """Check the ports and the JVM, then start `members` together; returns their pids."""
    if not members:
        return {}
    for member in members:
        for key, port in (("native_port", cluster.native_port), ("storage_port", cluster.storage_port)):
            if port_in_use(member.address, port, address_key=f"{member.name}'s address"):
                raise CommandError(
                    f"port {port} (cluster.{key}) on {member.address} is already in use by another process; "
                    f"stop it or set PSS_CLUSTER_{key.upper()}"
                )
    try:
        heap = parse_heap(cluster.heap, "cluster.heap")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    java = find_java(node.version)
    single = NodePaths.of(node)  # its jars are fetched once and shared by every node
    if not single.lib_marker.exists():
        single.root.mkdir(parents=True, exist_ok=True)
        with start_lock(single.lock_file, say):  # a `node start` may be fetching them right now
            ensure_jars(single, say)
    layout.size_file.write_text(f"{len(layout.members)}\n", encoding="utf-8")
    pids = {member.index: launch(java, member.paths, heap, member.cassandra_yaml(), JVM_OPTIONS) for member in members}
    names = ", ".join(f"{member.name} (pid {pids[member.index]})" for member in members)
    say(f"starting {names}: Cassandra {node.version}, heap {heap}, CQL port {cluster.native_port}; under {layout.root}")
    return pids


def _wait_ready(
    layout: ClusterLayout,
    cluster: ClusterConfig,
    launched: dict[int, int],
    views: dict[int, GossipView],
    serving: set[int],
    pairs: set[tuple[int, int]],
    started: float,
    say: Say,
) -> None:
    next_note = started + NOTE_EVERY
    awaited = {observer: sorted(peer for seer, peer in pairs if seer == observer) for observer, _ in pairs}
    while serving or pairs:
        for index, pid in launched.items():
            _check_alive(layout.member(index), pid)
        elapsed = time.monotonic() - started
        for index in sorted(serving):
            member = layout.member(index)
            if cql_answers(member.address, member.node.native_port):
                serving.discard(index)
                say(f"{member.name} serving CQL after {elapsed:.0f} s")
        for observer in sorted({observer for observer, _ in pairs}):
            view = views[observer]
            view.refresh()
            seen = {pair for pair in pairs if pair[0] == observer and view.sees_up(layout.member(pair[1]).address)}
            pairs -= seen
            if seen and not any(seer == observer for seer, _ in pairs):
                peers = ", ".join(layout.member(peer).name for peer in awaited[observer])
                say(f"node{observer} sees {peers} UP after {elapsed:.0f} s")
        if not serving and not pairs:
            return
        if elapsed >= cluster.start_timeout:
            lagging = layout.member(min(serving) if serving else min(pairs)[1])
            raise NodeError(
                f"cluster not ready within {cluster.start_timeout:.0f}s (cluster.start_timeout): "
                f"{_waiting_for(layout, serving, pairs)}",
                *failure_tail(lagging.paths),
            )
        if time.monotonic() >= next_note:
            say(f"  still waiting ({elapsed:.0f} s) for {_waiting_for(layout, serving, pairs)}")
            next_note += NOTE_EVERY
        time.sleep(0.5)  # A sync CLI watching ports and logs of other processes: there is nothing to await.


def _check_alive(member: Member, pid: int) -> None:
    code = reap(pid)
    if code is not None or not alive(pid):
        how = "" if code is None else f" (killed by signal {-code})" if code < 0 else f" with code {code}"
        raise NodeError(f"{member.name}: Cassandra exited during startup{how}", *failure_tail(member.paths))


def _waiting_for(layout: ClusterLayout, serving: set[int], pairs: set[tuple[int, int]]) -> str:
    parts = [f"CQL on {', '.join(layout.member(index).name for index in sorted(serving))}"] if serving else []
    count = len(layout.members)
    if len(pairs) == count * (count - 1) > 0:
        parts.append("every node to see the others UP")
    else:
        for observer in sorted({observer for observer, _ in pairs}):
            peers = ", ".join(layout.member(peer).name for seer, peer in sorted(pairs) if seer == observer)
            parts.append(f"node{observer} to see {peers} UP")
    return "; ".join(parts)
