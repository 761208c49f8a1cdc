"""Relay a Responses API stream as it arrives, reading its usage from the terminal event.

A Responses stream is a sequence of typed events (`event: response.output_text.delta` plus a
`data:` object with the same `type` and a `sequence_number`); there is no `[DONE]`. It ends with
`response.completed` or `response.incomplete` (a cap such as max_output_tokens was reached),
each carrying the whole response with its `usage`, or with `response.failed` / `error` when the
upstream gave up. Events pass through byte for byte; only the terminal ones are decoded.

A stream that stops before any of those gets an `error` event of Keyway's, in the documented
flat shape (`code`, `message`, `param`) and with the same fields nested under `error` as
api.openai.com sends them, so the official SDK raises APIError instead of ending cleanly.
Like a cut, a `response.failed` or `error` from the upstream settles as a failure of the key.

The terminal event repeats the whole response (its output, instructions and tools), so an event
may be held back up to `MAX_RESPONSE_EVENT_BYTES` before it is read. One longer than that is
relayed unread (see `EventFramer`): the stream's usage becomes unknown (-1, -1), and its end is
recognised by the event's name alone.
"""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.api.event_framer import EventFramer
from gateway.api.responses_wire import ResponsesUsage

__all__ = ["MAX_RESPONSE_EVENT_BYTES", "ResponsesStreamTap"]

MAX_RESPONSE_EVENT_BYTES: Final = 16 << 20
"""Above any terminal event of a real response; a longer event is relayed unread."""

_ENDS = (b"response.completed", b"response.incomplete")
_FAILS = (b"response.failed", b"error")
_MARKERS = (*_ENDS, *_FAILS)
"""Bytes that may start a terminal event; anything without them passes undecoded."""
_encoder = msgspec.json.Encoder()
_UNKNOWN = (-1, -1)


class _Response(msgspec.Struct):
    usage: ResponsesUsage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    response: _Response | None = None


_event_decoder = msgspec.json.Decoder(_Event)


class ResponsesStreamTap:
    """Responses API events pass through; usage and the end are read from terminal events."""

    __slots__ = ("_errored", "_events", "_framer", "_unread_kind", "completed", "usage")

    def __init__(self, *, max_event_bytes: int = MAX_RESPONSE_EVENT_BYTES) -> None:
        self._framer = EventFramer(max_event_bytes)
        self._events = 0
        self._errored = False
        self._unread_kind = b""  # the name of the event being relayed unread
        self.usage: tuple[int, int] | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> bytes:
        was_skipping = self._framer.skipping
        unread, complete, opened = self._framer.feed(chunk)
        if was_skipping and not self._framer.skipping:  # the over-long event ended
            self._events += 1
            self._end_unread()
        if complete:
            self._events += complete.count(b"\n\n") + complete.count(b"\r\n\r\n")
            if any(m in complete for m in _MARKERS):
                for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
                    if event and any(m in event for m in _MARKERS):
                        self._read(event)
        if opened:
            self.usage = _UNKNOWN
            self._unread_kind = _kind_of(opened)
        if not unread and not opened:
            return complete
        return unread + complete + opened

    def _end_unread(self) -> None:
        """An event relayed unread ended: a terminal one ends the stream, its usage unknown."""
        if self._unread_kind in _ENDS:
            self.completed = True
        elif self._unread_kind in _FAILS:
            self._errored = True
        self._unread_kind = b""

    def _read(self, event: bytes) -> None:
        """Note usage and the end of the stream, if `event` is a terminal one."""
        kind = b""
        data: list[bytes] = []
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if kind and kind not in _MARKERS:  # named, and not terminal: nothing to decode
            return
        try:
            parsed = _event_decoder.decode(b"\n".join(data))
        except (msgspec.DecodeError, RecursionError):
            return
        name = parsed.type.encode()
        if name in _ENDS:
            self.completed = True
        elif name in _FAILS:
            self._errored = True
        else:
            return
        usage = parsed.response.usage if parsed.response is not None else None
        if usage is not None and not self._framer.overflowed:
            self.usage = usage.counts()

    def finish(self) -> bytes:
        tail = self._framer.rest()
        if tail.strip() and not (self.completed or self._errored):
            # the last event may lack its blank line; a cut one decodes to nothing
            self._read(tail.replace(b"\r\n", b"\n").strip())
            if self.completed or self._errored:
                return tail + b"\n\n"
        if self.completed or self._errored:  # an upstream failure already told the client
            return tail
        return _cut_event(self._events)


_TYPE = b'{"type":"'


def _kind_of(opened: bytes) -> bytes:
    """The name of an event from its first bytes: its `event:` line, else its data's leading
    `"type"` (the upstreams write it first); b"" when neither is there."""
    end = opened.find(b"\n")
    first = (opened if end < 0 else opened[:end]).strip()
    if first.startswith(b"event:"):
        return first[6:].strip()
    data = first[5:].strip() if first.startswith(b"data:") else b""
    end = data.find(b'"', len(_TYPE))
    return data[len(_TYPE) : end] if data.startswith(_TYPE) and end > 0 else b""


def _cut_event(sequence_number: int) -> bytes:
    message = "the upstream stream ended before completion"
    error = {"type": "upstream_error", "code": "upstream_cut", "message": message, "param": None}
    payload = {
        "type": "error",
        "code": "upstream_cut",
        "message": message,
        "param": None,
        "sequence_number": sequence_number,
        "error": error,
    }
    return b"event: error\ndata: " + _encoder.encode(payload) + b"\n\n"
