"""Cut a relayed SSE byte stream into whole events, in linear time and bounded memory.

The stream taps forward whole events only, so an event's bytes wait until its blank line
arrives. An upstream may never send one: each chunk is appended to one buffer (no copy of what
is already held), and only the new bytes are searched for the blank line, so 1-byte chunks cost
what one big chunk costs. An event still open past `limit` bytes is not held any longer: its
bytes are relayed unread as they come, up to its blank line, and `overflowed` records that an
event went by unread (a tap can then no longer vouch for the usage it read).

A blank line is `\\n\\n` or `\\r\\n\\r\\n`, as OpenAI and Anthropic write them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_EVENT_BYTES", "EventFramer", "Framed"]

MAX_EVENT_BYTES: Final = 1 << 20
"""An incomplete event is held back up to this many bytes; past it, it is relayed unread."""

_LF: Final = b"\n\n"
_CRLF: Final = b"\r\n\r\n"
_OVERLAP: Final = len(_CRLF) - 1
"""Bytes of the previous data a blank line may start in."""

Framed = tuple[bytes, bytes, bytes]
"""(unread, events, unread): relay all three in this order; read only `events`, whole events.

The first part ends an over-long event that started in an earlier chunk; the last is the start
of an over-long event, whose rest will come as the first part of later chunks.
"""


def _last_end(data: bytes | bytearray, start: int) -> int:
    """The end of the last blank line in `data[start:]`, or -1."""
    lf = data.rfind(_LF, start)
    crlf = data.rfind(_CRLF, start)
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def _first_end(data: bytes) -> int:
    """The end of the first blank line in `data`, or -1."""
    ends = [i + len(sep) for sep in (_LF, _CRLF) if (i := data.find(sep)) >= 0]
    return min(ends) if ends else -1


class EventFramer:
    """Feed it the upstream's chunks; it returns what to relay and which whole events to read."""

    __slots__ = ("_limit", "_pending", "_recent", "_skipping", "overflowed")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._limit = limit
        self._pending = bytearray()
        self._skipping = False
        self._recent = b""  # the last bytes relayed unread: a blank line may straddle chunks
        self.overflowed = False

    @property
    def skipping(self) -> bool:
        """True while the bytes of an over-long event are being relayed unread."""
        return self._skipping

    def feed(self, chunk: bytes) -> Framed:
        """Split `chunk` (and what was held before it) into the three parts of `Framed`."""
        unread = b""
        if self._skipping:
            seen = self._recent + chunk
            end = _first_end(seen)
            if end < 0:
                self._recent = seen[-_OVERLAP:]
                return chunk, b"", b""
            cut = end - len(self._recent)
            unread, chunk = chunk[:cut], chunk[cut:]
            self._skipping = False
            self._recent = b""
        events = self._whole_events(chunk)
        if len(self._pending) <= self._limit:
            return unread, events, b""
        opened = bytes(self._pending)
        self._pending.clear()
        self._skipping = True
        self.overflowed = True
        self._recent = opened[-_OVERLAP:]
        return unread, events, opened

    def _whole_events(self, chunk: bytes) -> bytes:
        pending = self._pending
        if not pending:  # the common case: nothing held, the chunk is cut where it is
            end = _last_end(chunk, 0)
            if end < 0:
                pending += chunk
                return b""
            if end < len(chunk):
                pending += chunk[end:]
                return chunk[:end]
            return chunk
        start = max(len(pending) - _OVERLAP, 0)
        pending += chunk
        end = _last_end(pending, start)
        if end < 0:
            return b""
        events = bytes(pending[:end])
        del pending[:end]
        return events

    def rest(self) -> bytes:
        """What is held at the end of the stream: an event cut before its blank line."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest
