"""The real app on a real 3-node cluster (replication factor 3, LOCAL_QUORUM): a node killed during ingest,
restarted, then two nodes down. Run in file order: the second test restarts the node the first one killed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, LocalCluster, config_for, new_player, post_events, post_until_stored, session_pair

from daemon.core.config import Config
from daemon.core.config import replace as replace_config
from daemon.tools.node.cluster import kill_member, start_member, stop_member
from daemon.tools.node.gossip import GossipView
from daemon.tools.node.layout import layout_for
from web.app import create_app
from web.keys import DATABASE

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

KILLED = 3  # SIGKILLed by the first test, restarted by the second
START, END = "2016-11-30T10:00:00", "2016-11-30T10:20:00"  # within a day of the demo's now
PLAYERS_PER_REQUEST = 10


@dataclass
class Outage:
    """What the kill test leaves to the restart test."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # player -> the session_id a 200 acknowledged
    killed: bool = False


@pytest.fixture(scope="module")
def outage() -> Outage:
    return Outage()


@pytest.fixture
async def cluster_client(cassandra_cluster: LocalCluster, aiohttp_client: AiohttpClient) -> TestClient:
    """The real app on the cluster's keyspace, with the small limits of the other tests."""
    config: Config = config_for(cassandra_cluster.keyspace)
    config = replace_config(config, cassandra=cassandra_cluster.config.cassandra)
    return await aiohttp_client(create_app(config))


class Ingest:
    """Posts complete sessions of new players without pause and records every answer."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.acknowledged: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.timeline: list[tuple[float, float]] = []  # (sent at, seconds to the answer) of every POST

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            pairs = [session_pair(new_player(), START, END) for _ in range(PLAYERS_PER_REQUEST)]
            started = loop.time()
            # An exception here (no answer at all) fails the test: a lost request.
            response = await post_events(self.client, [event for pair in pairs for event in pair])
            self.timeline.append((started, loop.time() - started))
            self.statuses[response.status] += 1
            if response.status == 200:
                self.acknowledged.update((start["player_id"], start["session_id"]) for start, _ in pairs)
            else:
                self.failures.append(f"{response.status}: {await response.text()}")


def stored_sessions(local: LocalCluster, consistency: str) -> dict[str, str]:
    """Every complete session in the keyspace (player -> session_id), read with one paged scan at `consistency`."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    statement = SimpleStatement(
        f"SELECT player_id, session_id, start_ts, end_ts FROM {local.keyspace}.sessions_by_player",
        consistency_level=ConsistencyLevel.name_to_value[consistency],
        fetch_size=5000,
    )
    rows = local.admin.execute(statement, timeout=60)
    return {row.player_id: str(row.session_id) for row in rows if row.start_ts and row.end_ts}


async def answers_queries(client: TestClient, player: str, session: str) -> None:
    """The two reads the service offers answer, and the player's stored session is there."""
    response = await client.get(f"/v1/players/{player}/sessions")
    assert response.status == 200, await response.text()
    assert [found["session_id"] for found in (await response.json())["sessions"]] == [session]
    response = await client.get("/v1/session-starts?hours=24")
    assert response.status == 200, await response.text()
    assert "total" in await response.json()


def host_is_up(client: TestClient, address: str) -> bool:
    """The app's own driver's view of a node."""
    return any(host.is_up for host in client.app[DATABASE].cluster.metadata.all_hosts() if host.address == address)


async def test_a_node_killed_during_ingest_loses_no_acknowledged_session(
    healthy_cluster: LocalCluster, cluster_client: TestClient, outage: Outage
) -> None:
    local, loop = healthy_cluster, asyncio.get_running_loop()
    layout = layout_for(local.config.cluster, local.config.node)
    victim = layout.member(KILLED)
    # The peers' views from now on: they must notice the kill by themselves.
    views = [GossipView(peer.paths.system_log) for peer in layout.members if peer is not victim]
    for view in views:
        view.refresh()
    ingest, stop = Ingest(cluster_client), asyncio.Event()
    writers = [asyncio.create_task(ingest.run(stop)) for _ in range(2)]
    try:
        await asyncio.sleep(2.0)
        assert ingest.acknowledged, ingest.failures
        before = next(iter(ingest.acknowledged.items()))

        killed_at = loop.time()
        await asyncio.to_thread(kill_member, local.config.cluster, local.config.node, KILLED, print)
        outage.killed = True
        await answers_queries(cluster_client, *before)  # at once: the peers still think the node is up
        noticed: dict[str, float | None] = {"driver": None, "peers": None}
        next_query = loop.time() + 2.0
        while noticed["peers"] is None:
            assert loop.time() - killed_at < 60, f"peers did not see {victim.name} DOWN within 60 s"
            if noticed["driver"] is None and not host_is_up(cluster_client, victim.address):
                noticed["driver"] = loop.time() - killed_at
            if all(not view.refresh().get(victim.address, True) for view in views):
                noticed["peers"] = loop.time() - killed_at
            if loop.time() >= next_query:  # reads keep answering while the peers still count on the dead node
                await answers_queries(cluster_client, *before)
                next_query += 2.0
            await asyncio.sleep(0.2)  # watching another process's log: nothing to await
        await answers_queries(cluster_client, *before)
        await asyncio.sleep(2.0)  # ingest goes on with the node known DOWN
    finally:
        stop.set()
        await asyncio.gather(*writers)
    await answers_queries(cluster_client, *before)
    usual = max(seconds for sent, seconds in ingest.timeline if sent + seconds < killed_at)
    slowest = max((seconds, sent - killed_at) for sent, seconds in ingest.timeline if sent + seconds >= killed_at)
    print(
        f"\nkill: {sum(ingest.statuses.values())} POSTs, {len(ingest.acknowledged)} sessions acknowledged; "
        f"{victim.name} seen down by the app's driver after {noticed['driver'] or 0:.1f} s, by its peers after "
        f"{noticed['peers'] or 0:.1f} s; slowest POST before the kill {usual:.2f} s, after it {slowest[0]:.2f} s "
        f"(sent {slowest[1]:+.1f} s from the kill)"
    )
    assert ingest.statuses == {200: sum(ingest.statuses.values())}, ingest.failures[:3]  # no 5xx, no 503
    stored = stored_sessions(local, "LOCAL_QUORUM")  # two of three replicas, with the third still down
    assert {player: stored.get(player) for player in ingest.acknowledged} == ingest.acknowledged
    outage.acknowledged = ingest.acknowledged


async def test_the_killed_node_rejoins_and_every_replica_has_every_session(
    cassandra_cluster: LocalCluster, outage: Outage
) -> None:
    if not outage.killed:
        pytest.skip("restarts the node the test above kills: run the module in order")
    local = cassandra_cluster
    layout = layout_for(local.config.cluster, local.config.node)
    victim = layout.member(KILLED)
    peers = [peer for peer in layout.members if peer is not victim]
    logs = {peer.name: peer.paths.system_log.stat().st_size for peer in peers}
    seconds = await asyncio.to_thread(start_member, local.config.cluster, local.config.node, KILLED, print)

    # Hinted handoff is on by default in 5.0 (hinted_handoff_enabled: true, max_hint_window: 3h): the writes the
    # dead node missed were kept as hints by their coordinators, which replay them once they see it UP again
    # (hints are flushed and dispatch is tried every 10 s). No repair is run: wait for a peer to log the delivery.
    started = time.monotonic()
    delivered = f"to endpoint /{victim.address}:{local.config.cluster.storage_port}"
    while not any(
        "Finished hinted handoff" in line and delivered in line
        for peer in peers
        for line in peer.paths.system_log.read_bytes()[logs[peer.name]:].decode(errors="replace").splitlines()
    ):
        assert time.monotonic() - started < 60, f"no peer delivered hints to {victim.name} within 60 s"
        await asyncio.sleep(0.5)
    hints = time.monotonic() - started
    # ALL: the read needs every replica, the rejoined one included (a replica still missing a row would be
    # repaired by this very read, so the hint lines above are what shows that the hints did the work).
    stored = await asyncio.to_thread(stored_sessions, local, "ALL")
    assert {player: stored.get(player) for player in outage.acknowledged} == outage.acknowledged
    print(f"\nrestart: {victim.name} ready (CQL, peers UP) after {seconds:.1f} s; hints delivered {hints:.1f} s later")


async def test_two_nodes_down_answer_503_until_one_returns(
    healthy_cluster: LocalCluster, cluster_client: TestClient
) -> None:
    local = healthy_cluster
    cluster, node = local.config.cluster, local.config.node
    first = list(session_pair(new_player(), START, END))
    assert (await post_events(cluster_client, first)).status == 200

    await asyncio.gather(*(asyncio.to_thread(stop_member, cluster, node, index, print) for index in (1, 2)))
    during = list(session_pair(new_player(), START, END))
    response = await post_events(cluster_client, during)
    assert response.status == 503, await response.text()  # LOCAL_QUORUM needs 2 of 3 replicas; 1 is up
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"].startswith("Cassandra did not acknowledge the writes")
    assert (await cluster_client.get("/healthz")).status == 200  # the daemon itself is fine

    seconds = await asyncio.to_thread(start_member, cluster, node, 2, print)
    started = time.monotonic()
    attempts = await post_until_stored(cluster_client, during, budget=60.0)
    print(f"\ntwo down: node2 ready after {seconds:.1f} s; stored {time.monotonic() - started:.1f} s later, "
          f"attempt {attempts}")
    stored = await asyncio.to_thread(stored_sessions, local, "LOCAL_QUORUM")
    assert stored.get(first[0]["player_id"]) == first[0]["session_id"]
    assert stored.get(during[0]["player_id"]) == during[0]["session_id"]
