"""A TCP relay to the real Cassandra node that can freeze: Cassandra stops answering for one app, nobody else."""

from __future__ import annotations

import asyncio
from typing import Self

from conftest import config_for

from daemon.core.config import Config, load_config


class Relay:
    """A TCP relay between the app and the real node that can stop passing bytes: to the app, Cassandra freezes
    (as a paused process would) while the node that other test runs share carries on untouched."""

    __slots__ = ("_connections", "_flowing", "_server", "_upstream", "port")

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    def to_node(cls) -> Relay:
        """A relay to the node the tests use (config.toml plus PSS_* overrides)."""
        cassandra = load_config().cassandra
        return cls(cassandra.contact_points[0], cassandra.port)

    def config(self, keyspace: str) -> Config:
        """The test config for `keyspace`, reaching Cassandra through this relay with short driver timeouts, so a
        freeze turns into failed requests within seconds."""
        return config_for(
            keyspace, cassandra={"contact_points": ["127.0.0.1"], "port": self.port, "request_timeout": 1.0}
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.thaw()
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        node_reader, node_writer = await asyncio.open_connection(*self._upstream)
        try:
            await asyncio.gather(self._pipe(client_reader, node_writer), self._pipe(node_reader, client_writer))
        finally:
            node_writer.close()
            client_writer.close()
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()  # frozen: hold the bytes, answer nothing
            writer.write(data)
            await writer.drain()
