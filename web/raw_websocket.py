"""Raw websocket writes for the live feed, and every aiohttp behaviour they rely on, in one place.

The hub builds each frame once for all subscribers (daemon/live/frames.py), and `WebSocketPeer`
writes those bytes straight to the connection's transport instead of through aiohttp's websocket
writer (`ws.send_bytes`), which would build a frame per subscriber and await per message; that is
the measured fan-out win. It is correct only while these aiohttp behaviours hold:

1. The response is created with `compress=False` (see `feed_response`), so aiohttp negotiates no
   permessage-deflate and keeps no compression context that would have to see our frames.
2. aiohttp's own frames (heartbeat pings, pongs, the close frame) are uncompressed and written whole
   and synchronously (no await inside a frame) by `WebSocketWriter.send_frame` to the same transport
   as `request.transport`, so theirs and ours never interleave inside a frame and keep their order.
3. A server frame is final and unmasked with RFC 6455 lengths: `text_frame(payload)` equals the bytes
   aiohttp itself would write for that text message.
4. `request.transport` is an asyncio transport (`write`, `is_closing`, `get_write_buffer_size`,
   `abort`), or None once the connection is lost; `ws.closed` turns true as close() begins.
5. `ws.close(code=..., message=..., drain=False)` writes the close frame without awaiting a drain.

If an aiohttp upgrade breaks one of these, tests/test_aiohttp_internals.py says which; the way out
is either to adapt this module or to send with `await ws.send_bytes(...)`/`send_str` per message.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

CLOSE_TIMEOUT = 5.0  # seconds for the close handshake before the TCP connection is dropped


def feed_response(heartbeat: float, max_msg_size: int) -> web.WebSocketResponse:
    """The live feed's websocket response: never compressed, because `WebSocketPeer` writes raw frames."""
    return web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=max_msg_size, compress=False)


class WebSocketPeer:
    """Adapts an aiohttp websocket to the hub's `Peer`: ready-made frames out, a bounded close handshake.

    The hub writes frames it built once for all subscribers straight to the connection's transport:
    aiohttp's own writes (pings, pongs, the close frame) are whole frames written synchronously
    too, so the two never interleave inside a frame. The response is created without compression,
    so no deflate context expects to see these frames.
    """

    __slots__ = ("_ws", "_request")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._request = request

    def write(self, frames: bytes) -> None:
        transport = self._request.transport
        if self._ws.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("the websocket is closing")  # no data frame may follow a close frame
        transport.write(frames)

    def backlog(self) -> int:
        transport = self._request.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def close(self, code: int, reason: str) -> None:
        """Send the close frame behind whatever is still buffered; drop the connection if it never gets out."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                # No drain: when shut() interrupted a send blocked on a full socket, aiohttp keeps that
                # cancelled drain waiter until the socket drains, and draining again would re-raise it.
                await self._ws.close(code=code, message=reason.encode(), drain=False)
                await self._flushed()
        except TimeoutError:
            # The peer reads nothing, so it never gets the close frame: don't keep its buffers forever.
            transport = self._request.transport
            if transport is not None:
                transport.abort()

    async def _flushed(self) -> None:
        """Until the transport has sent everything (or is gone); aiohttp has nothing to await for this."""
        while (transport := self._request.transport) is not None and transport.get_write_buffer_size():
            await asyncio.sleep(0.05)  # noqa: ASYNC110 -- no event exists for "the transport flushed"
