"""The SSE framer: under any chunking, every byte comes out once and in order, whole events are
offered for reading, and an event longer than the limit goes by unread instead of being held."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.event_framer import EventFramer

__all__: list[str] = []

LIMIT = 64


def frame(chunks: list[bytes], limit: int = LIMIT) -> tuple[list[bytes], bytes, EventFramer]:
    """(the events offered for reading, everything relayed in order, the framer)."""
    framer = EventFramer(limit)
    read: list[bytes] = []
    relayed = bytearray()
    for chunk in chunks:
        unread, events, opened = framer.feed(chunk)
        if events:
            read.append(events)
        relayed += unread + events + opened
    relayed += framer.rest()
    return read, bytes(relayed), framer


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(data[pos : pos + size])
        pos += size
    return [*chunks, data[pos:]]


EVENT = st.builds(
    lambda body, sep: b"data: " + body + sep,
    st.binary(max_size=3 * LIMIT).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    st.sampled_from([b"\n\n", b"\r\n\r\n"]),
)


def split_events(data: bytes) -> list[bytes]:
    """`data` cut after each blank line (the events have no other line breaks)."""
    out, start = [], 0
    for i in range(len(data)):
        if data[start : i + 1].endswith((b"\n\n", b"\r\n\r\n")):
            out.append(data[start : i + 1])
            start = i + 1
    assert start == len(data)
    return out


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENT, max_size=8), sizes=st.lists(st.integers(0, 40), max_size=40))
def test_every_byte_once_in_order_and_only_whole_events_are_read(
    events: list[bytes], sizes: list[int]
) -> None:
    stream = b"".join(events)
    read, relayed, framer = frame(cut(stream, sizes))
    assert relayed == stream
    offered = [e for part in read for e in split_events(part)]
    assert all(e in events for e in offered), "never a fragment of an event"
    if framer.overflowed:
        assert any(len(e) > LIMIT for e in events)
    else:
        assert b"".join(offered) == stream


def test_an_over_long_event_is_relayed_unread_and_reading_resumes_after_it() -> None:
    long = b"data: " + b"x" * 200 + b"\n\n"
    short = b"data: ok\n\n"
    framer = EventFramer(LIMIT)
    assert framer.feed(short + long[:100]) == (b"", short, long[:100])
    assert framer.skipping and framer.overflowed
    assert framer.feed(long[100:150]) == (long[100:150], b"", b"")
    assert framer.feed(long[150:-1]) == (long[150:-1], b"", b"")
    assert framer.feed(long[-1:] + short + b"data: op") == (long[-1:], short, b"")
    assert not framer.skipping
    assert framer.rest() == b"data: op"


def test_a_blank_line_split_across_chunks_while_skipping() -> None:
    framer = EventFramer(8)
    assert framer.feed(b"data: 0123456789\r") == (b"", b"", b"data: 0123456789\r")
    assert framer.feed(b"\n\r") == (b"\n\r", b"", b"")
    assert framer.feed(b"\ndata: a\n\n") == (b"\n", b"data: a\n\n", b"")


def test_held_bytes_never_exceed_the_limit_with_one_byte_chunks() -> None:
    framer = EventFramer(1024)
    line = b"data: " + b"y" * 100_000
    relayed = 0
    for i in range(len(line)):
        unread, events, opened = framer.feed(line[i : i + 1])
        relayed += len(unread) + len(events) + len(opened)
        assert i + 1 - relayed <= 1024
    assert relayed + len(framer.rest()) == len(line)
