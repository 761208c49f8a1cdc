"""Server-Sent Events on the wire: an incremental parser and the two dialects' event encoders.

The parser follows the WHATWG event-stream rules: lines end in LF, CRLF or a lone CR; a line
starting with ``:`` is a comment (``: ping``); ``data`` lines of one event are joined with
``\\n``; a blank line dispatches the event; an event without ``data`` is not dispatched; an event
cut off before its blank line is never dispatched. Bytes are split into lines *before* they are
decoded, and line terminators are ASCII, so a chunk boundary anywhere, even inside a multi-byte
UTF-8 character, cannot corrupt text.

The upstream may never end a line or an event: only new bytes are searched for a line end and
only what is still open is held, so any chunking costs linear time, and an event (its open line
included) longer than ``max_event_bytes`` stops the parser: ``overflowed`` is set, the event is
dropped and nothing more is parsed. A translator cannot relay what it cannot read, so it ends
the stream with an error there.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "MAX_SSE_EVENT_BYTES",
    "OPENAI_DONE",
    "SSEEvent",
    "SSEParser",
    "encode_anthropic_event",
    "encode_openai_chunk",
]

MAX_SSE_EVENT_BYTES = 8 << 20
"""Far above any delta an upstream streams; a longer event stops the parser."""
OPENAI_DONE = b"data: [DONE]\n\n"
"""The sentinel that ends an OpenAI stream."""

_encoder = msgspec.json.Encoder()
_BOM = "\ufeff"


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched event: its name (``message`` when the stream named none) and its data."""

    event: str
    data: str

    @property
    def is_done(self) -> bool:
        """True for OpenAI's ``data: [DONE]`` sentinel."""
        return self.data == "[DONE]"


class SSEParser:
    """Turns arbitrary byte chunks of an event stream into complete events."""

    __slots__ = (
        "_after_cr", "_data", "_data_size", "_event", "_max", "_pending", "_started",
        "overflowed",
    )  # fmt: skip

    def __init__(self, max_event_bytes: int = MAX_SSE_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pending = bytearray()  # the open line, line ends already turned into LF
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0  # characters of the open event's data so far
        self.overflowed = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return every event it completed, in order."""
        if self.overflowed:
            return []
        if self._after_cr and chunk:
            # The previous chunk ended in CR: an LF opening this one belongs to that CRLF.
            self._after_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        # what is held has no CR left, so only the new bytes need their line ends turned to LF
        if b"\r" in chunk:
            self._after_cr = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
            if len(self._pending) + self._data_size > self._max:
                self._overflow()
            return []
        lines = bytes(self._pending) + chunk[:end] if self._pending else chunk[:end]
        self._pending = bytearray(chunk[end + 1 :])
        # Every complete line ends at an ASCII LF, so this cut never splits a character.
        text = lines.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        events: list[SSEEvent] = []
        event, data, size = self._event, self._data, self._data_size
        for line in text.split("\n"):
            if not line:
                if data:
                    events.append(SSEEvent(event or "message", "\n".join(data)))
                    data, size = [], 0
                event = ""
            elif line[0] != ":":  # a comment, such as ": ping"
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                    size += len(value) + 1
                elif name == "event":
                    event = value
                # `id` and `retry` steer browser reconnection, which no party here does.
        self._event, self._data, self._data_size = event, data, size
        if size + len(self._pending) > self._max:
            self._overflow()
        return events

    def _overflow(self) -> None:
        self.overflowed = True
        self._pending = bytearray()
        self._data, self._data_size = [], 0


def encode_openai_chunk(obj: Any) -> bytes:
    """One OpenAI stream chunk: ``data: <json>\\n\\n``."""
    return b"data: " + _encoder.encode(obj) + b"\n\n"


def encode_anthropic_event(event_type: str, obj: Any) -> bytes:
    """One Anthropic stream event: ``event: <type>\\ndata: <json>\\n\\n``."""
    return b"event: " + event_type.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"
