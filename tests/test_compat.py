"""The original service's routes: /add/<n>, /fetch/<country>/<hours>, /complete_sessions/<player_id>."""

from __future__ import annotations

import bz2
import uuid
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import AiohttpClient, config_for, post_events, session_pair

from web.app import create_app

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
