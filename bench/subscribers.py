"""Websocket subscribers for the fan-out benchmark, run in worker processes and driven over pipes.

Two kinds share the work. *Sampling* subscribers are ordinary aiohttp clients that decode every
message and record when each start arrived: they give the delivery delays. *Counting* subscribers
speak just enough websocket to count what arrives without decoding it, so hundreds of them cost
their process little: the benchmark measures the daemon's fan-out, and a client that parses
every message in Python would make the machine's two cores measure the clients instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

import aiohttp
import orjson

START_MARK = b'{"type":"session_start"'
"""How the daemon encodes every start message (orjson, keys in insertion order): counted by bytes."""
LAGGED = re.compile(rb'\{"type":"lagged","dropped":(\d+),')  # the comma proves the number is complete
OVERLAP = 64  # bytes kept from the previous read, so a mark split between reads is still found once
KEEPALIVE_SECONDS = 5.0  # any received data resets the server's heartbeat: counting clients ping instead of ponging
CLIENT_PING = b"\x89\x80\x00\x00\x00\x00"  # final ping, empty payload; client frames must carry a mask
CLIENT_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # final close, code 1000, masked with a zero key

Progress = Callable[[int, int, int], None]
"""(subscriber index, starts accounted for: received or reported dropped, receipt time in ns)."""
Subscription = tuple[str, ...] | None
"""The countries one subscriber asks for; None for every country."""


def subscription_url(url: str, countries: Subscription) -> str:
    return url if countries is None else f"{url}?countries={','.join(countries)}"


def expected_starts(countries: Subscription, by_country: dict[str, int]) -> int:
    """How many of a run's starts a subscriber must account for."""
    if countries is None:
        return sum(by_country.values())
    return sum(by_country.get(country, 0) for country in countries)


def stamp_of(session_id: str) -> int:
    """The send time the benchmark put in a session id's first 64 bits."""
    return int(session_id[:8] + session_id[9:13] + session_id[14:18], 16)


@dataclass
class Delivery:
    """What one worker's subscribers saw during one measured run."""

    received: int
    dropped: int
    closed: int
    last_ns: int
    complete: bool
    cpu_seconds: float  # the worker process's CPU time during the run
    samples: list[tuple[int, int]] = field(default_factory=list)  # (send stamp, receipt ns), sampling only


class StreamCounter:
    """Counts start messages and `lagged` drops in a websocket byte stream, across arbitrary read splits."""

    __slots__ = ("starts", "dropped", "_tail")

    def __init__(self) -> None:
        self.starts = 0
        self.dropped = 0
        self._tail = b""

    def feed(self, data: bytes) -> tuple[int, int]:
        """Count `data` (following what was fed before); returns (new starts, newly reported drops)."""
        chunk = self._tail + data
        starts = chunk.count(START_MARK) - self._tail.count(START_MARK)
        dropped = 0
        if b'"lagged"' in chunk:  # rare: only then is the chunk searched with the expression
            seen = len(self._tail)
            dropped = sum(int(match[1]) for match in LAGGED.finditer(chunk) if match.end() > seen)
        self._tail = chunk[-OVERLAP:]
        self.starts += starts
        self.dropped += dropped
        return starts, dropped


class CountingClient(asyncio.Protocol):
    """A websocket client that counts with `StreamCounter`; it never answers pings but pings itself."""

    def __init__(self, index: int, url: str, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.closing = False  # we started the close; a lost connection before that is the server's doing
        self._index = index
        self._url = urlsplit(url)
        self._target = f"{self._url.path}?{self._url.query}" if self._url.query else self._url.path
        self._progress = progress
        self._counter = StreamCounter()
        self._head = b""  # the handshake answer, until it is complete
        self._transport: asyncio.Transport | None = None
        self._keepalive: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self._target} HTTP/1.1\r\nHost: {self._url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._head += data
            head, found, data = self._head.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(f"no websocket upgrade: {head[:200]!r}"))
                self.close()
                return
            self.ready.set_result(None)
            self._schedule_keepalive()
        starts, dropped = self._counter.feed(data)
        if starts or dropped:
            self._progress(self._index, starts + dropped, time.time_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost before the upgrade: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def starts(self) -> int:
        return self._counter.starts

    @property
    def dropped(self) -> int:
        return self._counter.dropped

    def close(self) -> None:
        self.closing = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(CLIENT_CLOSE)
            self._transport.close()

    def _schedule_keepalive(self) -> None:
        self._keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self._ping)

    def _ping(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(CLIENT_PING)
            self._schedule_keepalive()


class SubscriberGroup:
    """One worker process's subscribers: connects them, then measures runs on command."""

    def __init__(self, url: str, subscriptions: list[Subscription], pipe: Connection) -> None:
        self._url = url
        self._subscriptions = subscriptions
        self._count = len(subscriptions)
        self._pipe = pipe
        self._expected: list[int] = []
        self._gone: set[int] = set()  # subscribers the server closed
        self._progress: list[int] = []
        self._remaining = 0
        self._done = asyncio.Event()
        self._received = self._dropped = self._closed = self._last_ns = 0
        self._samples: list[tuple[int, int]] = []
        self._cpu_at_arm = 0.0

    async def run(self) -> None:
        await self._connect_all()
        self._pipe.send(("ready", self._count))
        while (command := await asyncio.to_thread(self._pipe.recv))[0] == "measure":
            _, by_country, timeout = command
            self._arm(by_country)
            self._pipe.send(("armed",))
            with contextlib.suppress(TimeoutError):  # reported as incomplete
                await asyncio.wait_for(self._done.wait(), timeout)
            self._pipe.send(("result", self._result()))
        await self._close_all()

    async def _connect_all(self) -> None:
        raise NotImplementedError

    async def _close_all(self) -> None:
        raise NotImplementedError

    def _arm(self, by_country: dict[str, int]) -> None:
        self._expected = [expected_starts(countries, by_country) for countries in self._subscriptions]
        self._progress = [0] * self._count
        self._remaining = sum(
            1 for index, expected in enumerate(self._expected) if expected and index not in self._gone
        )
        self._received = self._dropped = self._last_ns = 0
        self._samples = []
        self._cpu_at_arm = time.process_time()
        self._done.clear()
        if self._remaining <= 0:
            self._done.set()

    def _result(self) -> Delivery:
        return Delivery(
            self._received, self._dropped, self._closed, self._last_ns, self._done.is_set(),
            time.process_time() - self._cpu_at_arm, self._samples,
        )

    def _server_closed(self, index: int) -> None:
        """Closed by the server (lagging, shutdown): stop waiting for it."""
        self._gone.add(index)
        self._closed += 1
        self._account(index, self._expected[index] if self._expected else 0, time.time_ns())

    def _account(self, index: int, amount: int, now: int) -> None:
        if not self._progress:
            return  # not armed yet
        before = self._progress[index]
        self._progress[index] = before + amount
        self._last_ns = max(self._last_ns, now)
        if before < self._expected[index] <= before + amount:
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()


class CountingGroup(SubscriberGroup):
    """Many cheap subscribers: starts and drops counted from the bytes."""

    def __init__(self, url: str, subscriptions: list[Subscription], pipe: Connection) -> None:
        super().__init__(url, subscriptions, pipe)
        self._clients: list[CountingClient] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._baseline = (0, 0)  # starts and drops counted before the current run

    async def _connect_all(self) -> None:
        loop = asyncio.get_running_loop()
        url = urlsplit(self._url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        for index, countries in enumerate(self._subscriptions):
            client = CountingClient(index, subscription_url(self._url, countries), self._on_data)
            await loop.create_connection(lambda client=client: client, host, port)  # type: ignore[misc]
            await client.ready
            self._clients.append(client)
            self._watchers.append(asyncio.create_task(self._watch(index, client)))

    def _on_data(self, index: int, amount: int, now: int) -> None:
        self._account(index, amount, now)

    def _totals(self) -> tuple[int, int]:
        return sum(client.starts for client in self._clients), sum(client.dropped for client in self._clients)

    def _arm(self, by_country: dict[str, int]) -> None:
        super()._arm(by_country)
        self._baseline = self._totals()

    def _result(self) -> Delivery:
        starts, dropped = self._totals()
        self._received, self._dropped = starts - self._baseline[0], dropped - self._baseline[1]
        return super()._result()

    async def _watch(self, index: int, client: CountingClient) -> None:
        await client.lost
        if not client.closing:
            self._server_closed(index)

    async def _close_all(self) -> None:
        for client in self._clients:
            client.close()
        await asyncio.gather(*self._watchers)


class SamplingGroup(SubscriberGroup):
    """A few full clients: every message decoded, every start's receipt time recorded."""

    def __init__(self, url: str, subscriptions: list[Subscription], pipe: Connection) -> None:
        super().__init__(url, subscriptions, pipe)
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []

    async def _connect_all(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for index, countries in enumerate(self._subscriptions):
            ws = await self._session.ws_connect(subscription_url(self._url, countries), max_msg_size=0)
            greeting = await ws.receive_json(timeout=30)
            assert greeting["type"] == "subscribed", greeting
            self._sockets.append(ws)
            self._readers.append(asyncio.create_task(self._read(index, ws)))

    async def _read(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.time_ns()
            data = orjson.loads(message.data)
            if data["type"] == "session_start":
                self._samples.append((stamp_of(data["session_id"]), now))
                self._received += 1
                self._account(index, 1, now)
            elif data["type"] == "lagged":
                self._dropped += data["dropped"]
                self._account(index, data["dropped"], now)
        if ws.close_code != aiohttp.WSCloseCode.OK:
            self._server_closed(index)

    async def _close_all(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._sockets))
        await asyncio.gather(*self._readers)
        if self._session is not None:
            await self._session.close()


GROUPS: dict[str, type[SubscriberGroup]] = {"counting": CountingGroup, "sampling": SamplingGroup}


def worker_main(kind: str, url: str, subscriptions: list[Subscription], pipe: Connection) -> None:
    """A worker process's entry point."""
    asyncio.run(GROUPS[kind](url, subscriptions, pipe).run())
