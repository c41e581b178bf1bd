"""What a node thinks of its peers, read from its system.log: the gossiper logs "InetAddress /127.0.0.2:7001 is
now UP" (or DOWN) whenever its view of a peer changes. ccm waits for the same lines; no nodetool, no JMX."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# The address may carry a host name before the slash ("localhost/127.0.0.1:7001").
_STATE_LINE = re.compile(rb"InetAddress \S*/(\d{1,3}(?:\.\d{1,3}){3}):\d+ is now (UP|DOWN)")


class GossipView:
    """A node's latest view of its peers (address -> UP?), kept current by reading its log as it grows."""

    __slots__ = ("log", "offset", "peers")

    def __init__(self, log: Path, offset: int = 0) -> None:
        self.log = log
        self.offset = offset
        self.peers: dict[str, bool] = {}

    def refresh(self) -> dict[str, bool]:
        """Read the complete lines appended since the last call; returns the view."""
        try:
            with self.log.open("rb") as handle:
                if handle.seek(0, 2) < self.offset:  # a new run replaced the log: start over
                    self.offset = 0
                    self.peers.clear()
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.peers
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(complete)
        for match in _STATE_LINE.finditer(complete):
            self.peers[match.group(1).decode()] = match.group(2) == b"UP"
        return self.peers

    def sees_up(self, address: str) -> bool:
        return self.peers.get(address, False)

    def forget(self, addresses: Iterable[str]) -> None:
        """Drop what the log said so far about these peers: only later lines will count."""
        for address in addresses:
            self.peers.pop(address, None)
