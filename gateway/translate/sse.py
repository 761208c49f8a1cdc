"""Server-Sent Events on the wire: an incremental parser and the two dialects' event encoders.

The parser follows the WHATWG event-stream rules: lines end in LF, CRLF or a lone CR; a line
starting with ``:`` is a comment (``: ping``); ``data`` lines of one event are joined with
``\\n``; a blank line dispatches the event; an event without ``data`` is not dispatched; an event
cut off before its blank line is never dispatched. Bytes are split into lines *before* they are
decoded, and line terminators are ASCII, so a chunk boundary anywhere, even inside a multi-byte
UTF-8 character, cannot corrupt text.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "OPENAI_DONE",
    "SSEEvent",
    "SSEParser",
    "encode_anthropic_event",
    "encode_openai_chunk",
]

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

    __slots__ = ("_after_cr", "_data", "_event", "_pending", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return every event it completed, in order."""
        if self._after_cr and chunk:
            # The previous chunk ended in CR: an LF opening this one belongs to that CRLF.
            self._after_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            self._after_cr = buffer[-1] == 0x0D
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            return []
        self._pending = buffer[end + 1 :]
        # Every complete line ends at an ASCII LF, so this cut never splits a character.
        text = buffer[:end].decode("utf-8", "replace")
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        events: list[SSEEvent] = []
        event, data = self._event, self._data
        for line in text.split("\n"):
            if not line:
                if data:
                    events.append(SSEEvent(event or "message", "\n".join(data)))
                    data = []
                event = ""
            elif line[0] != ":":  # a comment, such as ": ping"
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                # `id` and `retry` steer browser reconnection, which no party here does.
        self._event, self._data = event, data
        return events


def encode_openai_chunk(obj: Any) -> bytes:
    """One OpenAI stream chunk: ``data: <json>\\n\\n``."""
    return b"data: " + _encoder.encode(obj) + b"\n\n"


def encode_anthropic_event(event_type: str, obj: Any) -> bytes:
    """One Anthropic stream event: ``event: <type>\\ndata: <json>\\n\\n``."""
    return b"event: " + event_type.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"
