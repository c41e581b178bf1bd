"""The bounded memory of session ids already announced, so a start stored twice goes out once."""

from __future__ import annotations

import collections
import uuid


class RecentIds:
    """The last `size` session ids seen, oldest forgotten first (a ring beside a set: O(1) per id).

    A start is stored twice when a client retries its POST on another replica after a 503, and
    reaches a replica twice when local fallback delivered it and the stream then brings it too;
    both copies carry the same session id. Duplicates further apart than `size` starts get through.
    """

    __slots__ = ("size", "_ring", "_seen")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._ring: collections.deque[uuid.UUID] = collections.deque()
        self._seen: set[uuid.UUID] = set()

    def __len__(self) -> int:
        return len(self._ring)

    def __contains__(self, session_id: uuid.UUID) -> bool:
        return session_id in self._seen

    def add(self, session_id: uuid.UUID) -> bool:
        """Remember `session_id`; False when it is already remembered (a duplicate)."""
        if session_id in self._seen:
            return False
        if len(self._ring) == self.size:
            self._seen.discard(self._ring.popleft())
        self._ring.append(session_id)
        self._seen.add(session_id)
        return True
