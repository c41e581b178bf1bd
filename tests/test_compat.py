"""The original service's routes: /add/<n>, /fetch/<country>/<hours>, /complete_sessions/<player_id>."""

from __future__ import annotations

import asyncio
import bz2
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, post_events, session_pair

from daemon.ingest.errors import StorageUnavailable
from web.app import create_app
from web.keys import PIPELINE

pytestmark = pytest.mark.cassandra


def reference_line(player: str, event: str, session: str, ts: str, country: str | None) -> bytes:
    """A line in the reference file's exact shape: its key order and json.dumps spacing."""
    fields: dict[str, str] = {"player_id": player}
    if country is not None:
        fields["country"] = country
    fields.update(event=event, session_id=session, ts=ts)
    return ", ".join(f'"{k}": {orjson.dumps(v).decode()}' for k, v in fields.items()).join("{}").encode()


@pytest.fixture
async def compat_client(isolated_keyspace: str, aiohttp_client: AiohttpClient, tmp_path: Path) -> TestClient:
    player = "0a2d12a1a7e145de8bae44c0c6e06629"
    lines = []
    for hour in range(5):
        session = str(uuid.uuid4())
        lines.append(reference_line(player, "start", session, f"2016-11-30T{18 + hour:02d}:00:00", "NA"))
        lines.append(reference_line(player, "end", session, f"2016-11-30T{18 + hour:02d}:30:00", None))
    raw = tmp_path / "assignment_data.jsonl.bz2"
    raw.write_bytes(bz2.compress(b"\n".join(lines) + b"\n"))
    config = config_for(isolated_keyspace, compat={"raw_file": str(raw)})
    return await aiohttp_client(create_app(config))


async def test_add_continues_where_the_previous_call_stopped(compat_client: TestClient) -> None:
    first = await compat_client.get("/add/3")
    assert first.status == 200 and first.content_type == "text/html"
    assert await first.text() == "3 events have been added"
    assert await (await compat_client.get("/add/4")).text() == "4 events have been added"
    assert await (await compat_client.get("/add/100")).text() == "3 events have been added"  # end of file
    assert await (await compat_client.get("/add/1")).text() == "0 events have been added"
    fetched = await (await compat_client.get("/fetch/NA/24")).text()
    assert fetched == " ; ".join(f"2016-11-30 {h:02d}:00:00" for h in (22, 21, 20, 19, 18))


async def test_fetch_formats_and_empty_answers(compat_client: TestClient) -> None:
    assert (await compat_client.get("/add/10")).status == 200
    # The window (now - 4 h, now] leaves out the start at exactly 20:00.
    assert await (await compat_client.get("/fetch/NA/4")).text() == "2016-11-30 22:00:00 ; 2016-11-30 21:00:00"
    assert await (await compat_client.get("/fetch/NA/0")).text() == ""
    assert await (await compat_client.get("/fetch/ZZ/24")).text() == ""
    assert await (await compat_client.get("/fetch/Code/24")).text() == ""


async def test_complete_sessions_in_the_original_shape(client: TestClient) -> None:
    player = uuid.uuid4().hex
    pair = session_pair(player, "2016-11-29T10:00:00", "2016-11-29T10:08:01", "GH")
    assert (await post_events(client, list(pair))).status == 200
    response = await client.get(f"/complete_sessions/{player}")
    assert response.status == 200
    assert await response.json() == [
        {
            "player_id": player,
            "session_id": pair[0]["session_id"],
            "session_end": "2016-11-29 10:08:01",
            "session_start": "2016-11-29 10:00:00",
            "country": "GH",
        }
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/add/0",
        "/add/100001",
        "/add/ten",
        "/add/-1",
        "/add/",
        "/fetch/FI",
        "/fetch/FI/x",
        "/fetch/FI/1.5",
        "/fetch/FI/8761",
        "/complete_sessions/abc",
        "/complete_sessions/0a2d12a1a7e145de8bae44c0c6e0662",
        "/complete_sessions/0a2d12a1-a7e1-45de-8bae-44c0c6e06629",
    ],
)
async def test_what_the_original_converters_rejected_is_404(client: TestClient, path: str) -> None:
    assert (await client.get(path)).status == 404


async def test_add_without_a_configured_file_is_404_with_a_reason(shared_keyspace: str, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(config_for(shared_keyspace)))
    response = await client.get("/add/5")
    assert response.status == 404
    assert (await response.json())["error"] == "compat.raw_file is not configured"


def raw_file_of(tmp_path: Path, sessions: int, player: str = "0a2d12a1a7e145de8bae44c0c6e06629") -> tuple[Path, list[str]]:
    """A bz2 reference-shaped file of `sessions` complete sessions; returns it and its session ids."""
    lines, ids = [], []
    for index in range(sessions):
        session = str(uuid.uuid4())
        ids.append(session)
        minute = f"2016-11-30T{index // 60 % 24:02d}:{index % 60:02d}"
        lines.append(reference_line(player, "start", session, f"{minute}:00", "NA"))
        lines.append(reference_line(player, "end", session, f"{minute}:30", None))
    raw = tmp_path / "assignment_data.jsonl.bz2"
    raw.write_bytes(bz2.compress(b"\n".join(lines) + b"\n"))
    return raw, ids


async def test_an_add_that_could_not_store_its_lines_skips_none(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, _ = raw_file_of(tmp_path, 5)
    client = await aiohttp_client(create_app(config_for(isolated_keyspace, compat={"raw_file": str(raw)})))
    pipeline = client.app[PIPELINE]
    real_submit = pipeline.submit

    async def unavailable(events: Any) -> None:
        raise StorageUnavailable("injected: Cassandra did not acknowledge")

    monkeypatch.setattr(pipeline, "submit", unavailable)
    refused = await client.get("/add/4")
    assert refused.status == 503 and "Retry-After" in refused.headers
    monkeypatch.setattr(pipeline, "submit", real_submit)
    assert await (await client.get("/add/4")).text() == "4 events have been added"  # the same four lines
    assert await (await client.get("/add/100")).text() == "6 events have been added"
    fetched = await (await client.get("/fetch/NA/48")).text()
    assert len(fetched.split(" ; ")) == 5  # every start stored


async def test_two_replicas_adding_at_once_store_every_line_and_hand_out_each_once(
    isolated_keyspace: str, aiohttp_client: AiohttpClient, tmp_path: Path, cassandra_admin: Any
) -> None:
    raw, ids = raw_file_of(tmp_path, 150)
    config = config_for(isolated_keyspace, compat={"raw_file": str(raw)})
    replicas = [await aiohttp_client(create_app(config)) for _ in range(2)]

    async def add_until_the_end(replica: TestClient) -> int:
        handed_out = 0
        while True:
            text = await (await replica.get("/add/7")).text()
            added = int(text.split()[0])
            if added == 0:
                return handed_out
            handed_out += added

    totals = await asyncio.gather(*(add_until_the_end(replica) for replica in replicas))
    assert sum(totals) == 300  # each of the 300 lines handed out exactly once across the two replicas
    assert all(total > 0 for total in totals)  # both took part
    rows = cassandra_admin.execute(
        f"SELECT session_id, start_ts, end_ts FROM {isolated_keyspace}.sessions_by_player WHERE player_id = %s",
        ("0a2d12a1a7e145de8bae44c0c6e06629",),
    )
    complete = {str(row.session_id) for row in rows if row.start_ts and row.end_ts}
    assert complete == set(ids)  # every line stored, none skipped
