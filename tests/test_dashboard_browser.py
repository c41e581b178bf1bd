"""The dashboard in a real headless Chromium, driven over the DevTools protocol, against the real app."""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import AiohttpClient, new_player, post_events, start

from daemon.core.config import Config
from web.app import create_app
from web.keys import LIVE_HUB

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.cassandra,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium"),
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
START_TIMEOUT = 30.0
CDP_TIMEOUT = 15.0
WIDTH, HEIGHT = 1280, 800

AiohttpServer = Callable[..., Awaitable[TestServer]]


class CdpError(Exception):
    """Chromium answered a DevTools command with an error, or a page script threw."""


class Page:
    """One page target over a CDP websocket: commands with ids, a reader task routing the answers."""

    __slots__ = ("_ws", "_ids", "_waiting", "_reader", "problems")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")
        self.problems: list[str] = []  # page exceptions and console/CSP errors

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._ws.close()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        answer = self._waiting[command_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_str(orjson.dumps({"id": command_id, "method": method, "params": params}).decode())
        try:
            return await asyncio.wait_for(answer, CDP_TIMEOUT)
        finally:
            self._waiting.pop(command_id, None)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (promises are awaited)."""
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or details.get("text"))
        return reply["result"].get("value")

    async def wait_for(self, condition: str, timeout: float) -> Any:
        """Resolve inside the page as soon as `condition` (a JS expression) is truthy; its value."""
        failure = orjson.dumps("timed out: " + condition).decode()
        return await self.evaluate(
            f"""new Promise((resolve, reject) => {{
                const deadline = performance.now() + {timeout * 1000};
                const check = () => {{
                    let value;
                    try {{ value = ({condition}); }} catch (error) {{ value = undefined; }}
                    if (value) resolve(value);
                    else if (performance.now() > deadline) reject(new Error({failure}));
                    else setTimeout(check, 25);
                }};
                check();
            }})"""
        )

    async def screenshot(self, path: Path) -> None:
        reply = await self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(reply["data"]))  # a small local file: not worth a thread

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = orjson.loads(message.data)
            answer = self._waiting.get(data.get("id", 0))
            if answer is not None and not answer.done():
                if "error" in data:
                    answer.set_exception(CdpError(f"{data['error']}"))
                else:
                    answer.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.problems.append(str(data["params"]["exceptionDetails"]))
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                self.problems.append(data["params"]["entry"]["text"])


async def launch(user_data: Path) -> asyncio.subprocess.Process:
    assert CHROMIUM is not None
    return await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-port=0", f"--user-data-dir={user_data}",
        f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--force-device-scale-factor=1",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def devtools_port(process: asyncio.subprocess.Process, user_data: Path) -> int:
    """Chromium writes DevToolsActivePort (the port, then the browser path) once it listens.

    Another process's file gives nothing to await, so this looks every 50 ms (bounded by the caller).
    """
    path = user_data / "DevToolsActivePort"
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before DevTools listened")
        try:
            lines = path.read_text().split()
        except FileNotFoundError:
            lines = []
        if len(lines) >= 2:  # both lines: the file is complete
            return int(lines[0])
        await asyncio.sleep(0.05)


async def drain_stderr(process: asyncio.subprocess.Process, tail: collections.deque[bytes]) -> None:
    """Keep reading so a chatty Chromium never blocks on a full pipe; keep the last lines for failures."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        tail.append(line)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[tuple[int, aiohttp.ClientSession]]:
    """A headless Chromium; yields its DevTools port and an HTTP session to talk to it."""
    user_data = tmp_path / "chromium"
    process = await launch(user_data)
    tail: collections.deque[bytes] = collections.deque(maxlen=20)
    drainer = asyncio.create_task(drain_stderr(process, tail), name="chromium-stderr")
    try:
        try:
            port = await asyncio.wait_for(devtools_port(process, user_data), START_TIMEOUT)
        except (TimeoutError, RuntimeError) as exc:
            pytest.fail(f"chromium did not start: {exc}\n" + b"".join(tail).decode(errors="replace"))
        async with aiohttp.ClientSession() as session:
            yield port, session
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        await drainer


@pytest.fixture
async def page(browser: tuple[int, aiohttp.ClientSession]) -> AsyncIterator[Page]:
    port, session = browser
    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
        targets = await response.json()
    target = next(target for target in targets if target["type"] == "page")
    ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
    page = Page(ws)
    try:
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            await page.call(domain)
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False
        )
        yield page
    finally:
        await page.close()


@pytest.fixture
async def served(aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, app_config: Config) -> TestClient:
    """The real app on a real TCP port, and a client for posting to it."""
    server = await aiohttp_server(create_app(app_config))
    return await aiohttp_client(server)


def text_of(element_id: str) -> str:
    return f"document.getElementById({orjson.dumps(element_id).decode()}).textContent"


def live_count(country: str) -> str:
    """JS: the live counter shown for `country`, or 0 when it has no bar."""
    return f"""(() => {{
        for (const row of document.querySelectorAll("#live-bars li")) {{
            if (row.querySelector(".code").textContent === {orjson.dumps(country).decode()})
                return Number(row.querySelector(".count").textContent.replace(/,/g, ""));
        }}
        return 0;
    }})()"""


async def post_starts(client: TestClient, countries: list[str], ts: str) -> list[str]:
    player = new_player()
    events = [start(player, str(uuid.uuid4()), ts, country) for country in countries]
    response = await post_events(client, events)
    assert response.status == 200, await response.text()
    return [event["session_id"] for event in events]


async def test_dashboard_shows_live_starts_per_country(served: TestClient, page: Page) -> None:
    await page.call("Page.navigate", url=str(served.make_url("/")))
    await page.wait_for('document.readyState === "complete"', 10)
    assert await page.wait_for('document.getElementById("status").dataset.state === "live"', 10)
    assert await page.evaluate(text_of("subscribed")) == "all countries"

    sessions = await post_starts(served, ["FI", "FI", "EE", "FI", "EE"], "2016-11-30T23:30:00")
    assert await page.wait_for(f"{live_count('FI')} === 3 && {live_count('EE')} === 2", 2.0)
    assert await page.evaluate(text_of("live-total")) == "5"
    latest = await page.evaluate('document.getElementById("latest").textContent')
    assert all(session in latest for session in sessions)
    assert "Finland" in await page.evaluate(text_of("live-bars"))

    # The filter changes the subscription: only Estonia from now on.
    await page.evaluate('document.getElementById("countries").value = "ee"')
    await page.evaluate('document.getElementById("filter").requestSubmit()')
    assert await page.wait_for(f'{text_of("subscribed")} === "EE"', 2.0)
    await post_starts(served, ["FI", "EE", "SE"], "2016-11-30T23:31:00")
    assert await page.wait_for(f"{live_count('EE')} === 3", 2.0)
    assert await page.evaluate(f"{live_count('FI')} === 3 && {live_count('SE')} === 0")

    # Stored totals for the selected window come from GET /v1/session-starts.
    await page.evaluate('document.querySelector("button[data-hours=\\"24\\"]").click()')
    assert await page.wait_for(f'{text_of("totals-bars")}.includes("Finland")', 10)

    await page.screenshot(ARTIFACTS / "dashboard.png")

    # The daemon going away (1001) shows a countdown to the next attempt.
    assert served.app is not None
    await served.app[LIVE_HUB].close()
    status = await page.wait_for(
        f'/^reconnecting in \\d+s$/.test({text_of("status-text")}) && {text_of("status-text")}', 5.0
    )
    assert status.startswith("reconnecting in ")
    assert page.problems == []
