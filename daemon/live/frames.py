"""WebSocket text frames built once per message, so one start's frame is shared by every subscriber."""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit + opcode 1 (text)
_SHORT_LIMIT = 126  # RFC 6455 section 5.2: lengths below this fit the 7-bit field
_MEDIUM_LIMIT = 1 << 16  # below this: 16-bit extended length, else 64-bit


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying `payload` (UTF-8 JSON); servers never mask (RFC 6455 5.1)."""
    length = len(payload)
    if length < _SHORT_LIMIT:
        header = bytes((_FIN_TEXT, length))
    elif length < _MEDIUM_LIMIT:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload
