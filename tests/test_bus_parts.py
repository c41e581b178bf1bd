"""The live bus's parts without Redis: the dedup window, stream ids and where a reader resumes, entries, held starts."""

from __future__ import annotations

import uuid

import pytest

from daemon.core.events import Event
from daemon.live.dedup import RecentIds
from daemon.live.held import HeldStarts
from daemon.live.redis_client import safe_url
from daemon.live.stream import ORIGIN, StreamId, decode_starts, encode_starts, resume_point

TS_MS = 1_480_546_800_000


def starts(count: int, player: str = "p") -> list[Event]:
    return [Event("start", f"{player}{i}", uuid.uuid4(), TS_MS + i, "FI") for i in range(count)]


# --- the dedup window ---------------------------------------------------------------------------


def test_a_remembered_id_is_a_duplicate() -> None:
    window = RecentIds(3)
    first, second = uuid.uuid4(), uuid.uuid4()
    assert window.add(first) and window.add(second)
    assert not window.add(first) and not window.add(second)
    assert len(window) == 2 and first in window


def test_the_window_forgets_the_oldest_first_and_stays_bounded() -> None:
    window = RecentIds(3)
    ids = [uuid.uuid4() for _ in range(5)]
    for session_id in ids:
        assert window.add(session_id)
    assert len(window) == 3
    assert [session_id in window for session_id in ids] == [False, False, True, True, True]
    assert window.add(ids[0])  # forgotten: a duplicate this far apart gets through
    assert ids[2] not in window  # and it pushed out the oldest remembered one
    assert not window.add(ids[4])


def test_a_duplicate_does_not_refresh_its_place() -> None:
    window = RecentIds(2)
    old, new = uuid.uuid4(), uuid.uuid4()
    window.add(old)
    window.add(new)
    assert not window.add(old)
    window.add(uuid.uuid4())
    assert old not in window and new in window  # a ring, in order of first sight


def test_the_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentIds(0)


# --- stream ids and the resume point ------------------------------------------------------------


def test_stream_ids_parse_and_order_like_redis() -> None:
    assert StreamId.parse(b"1480546800000-3") == StreamId(1480546800000, 3)
    assert StreamId.parse("17") == StreamId(17, 0)
    assert str(StreamId(5, 1)) == "5-1"
    # Numerically, not as text: "9-0" < "10-0", and the sequence breaks ties.
    assert StreamId.parse("9-0") < StreamId.parse("10-0") < StreamId.parse("10-1")
    assert ORIGIN < StreamId(0, 1)


def test_a_first_connection_reads_what_is_appended_from_then_on() -> None:
    assert resume_point(None, StreamId(100, 2)) == StreamId(100, 2)
    assert resume_point(None, None) == ORIGIN  # no stream yet: from its first entry


def test_a_reconnection_resumes_after_the_last_entry_read() -> None:
    # Entries appended while the reader was away lie between its last id and the tail: it reads them.
    assert resume_point(StreamId(100, 2), StreamId(250, 0)) == StreamId(100, 2)
    assert resume_point(StreamId(100, 2), StreamId(100, 2)) == StreamId(100, 2)


def test_a_stream_younger_than_what_was_read_is_read_whole() -> None:
    # Redis restarted without persistence (or the key was deleted): every entry in it is new to the reader,
    # even when the new server's clock, and so its ids, are behind the old one's.
    assert resume_point(StreamId(100, 2), None) == ORIGIN
    assert resume_point(StreamId(100, 2), StreamId(50, 0)) == ORIGIN


# --- entries ------------------------------------------------------------------------------------


def test_an_entry_carries_a_flushs_starts_in_order() -> None:
    flush = starts(3) + [Event("start", "ü-player", uuid.uuid4(), TS_MS, "SE")]
    assert decode_starts(encode_starts(flush)) == flush


@pytest.mark.parametrize("payload", [b"not json", b"{}", b"[[1, 2]]", b"[[\"p\", \"not-a-uuid\", 1, \"FI\"]]", b"[5]"])
def test_a_foreign_entry_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_starts(payload)


# --- held starts --------------------------------------------------------------------------------


def test_held_starts_are_bounded_and_refused_whole() -> None:
    held = HeldStarts(5)
    assert held.put(starts(3), local=False)
    assert not held.put(starts(3), local=False)  # would be 6
    assert held.put(starts(2), local=False)
    assert len(held) == 5


def test_appended_starts_are_held_until_read_back() -> None:
    held = HeldStarts(100)
    held.put(starts(2), local=False)
    held.put(starts(3), local=True)  # the hub had these directly: they leave once sent
    assert len(held.send(10)) == 2
    held.sent([StreamId(10, 0), StreamId(10, 1)], read_up_to=None)
    assert len(held) == 2
    held.read(StreamId(9, 5))
    assert len(held) == 2
    held.read(StreamId(10, 0))
    assert len(held) == 0


def test_an_entry_read_back_before_its_reply_is_not_held() -> None:
    held = HeldStarts(100)
    held.put(starts(2), local=False)
    held.send(1)
    held.sent([StreamId(10, 0)], read_up_to=StreamId(10, 0))
    assert len(held) == 0


def test_when_redis_goes_away_the_hub_gets_every_undelivered_batch_in_order() -> None:
    held = HeldStarts(100)
    appended, in_flight, queued, local = starts(1, "a"), starts(1, "b"), starts(1, "c"), starts(1, "d")
    held.put(appended, local=False)
    held.send(1)
    held.sent([StreamId(10, 0)], read_up_to=None)
    held.put(in_flight, local=False)
    held.put(local, local=True)
    held.put(queued, local=False)
    held.send(1)
    assert held.undelivered() == [appended, in_flight, queued]
    assert held.undelivered() == []  # each batch once
    assert len(held) == 3  # the appended one is forgotten; the others still go to the stream, for the others
    failed, undelivered = held.not_sent()
    assert (failed, undelivered) == (1, [])  # the failed append's batch went to the hub already
    assert len(held) == 2


def test_a_failed_append_hands_back_what_the_hub_has_not_had() -> None:
    held = HeldStarts(100)
    batch = starts(2)
    held.put(batch, local=False)
    held.put(starts(1), local=True)
    held.send(2)
    assert held.not_sent() == (3, [batch])
    assert len(held) == 0


def test_a_logged_url_hides_its_password() -> None:
    assert safe_url("redis://pss:secret@10.0.0.5:6390/0") == "redis://pss:***@10.0.0.5:6390/0"
    assert safe_url("redis://127.0.0.1:6390/0") == "redis://127.0.0.1:6390/0"
