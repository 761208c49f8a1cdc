"""Relay SSE streams that need no translation, event by event, reading usage on the way.

A tap has the interface of the translators in `gateway.translate` (feed / finish / usage /
completed), so the relay treats a passthrough and a translated stream alike. Events are
forwarded as soon as they are complete, never re-encoded; a stream that ends before its end
event gets an error event instead of a clean end.

What the upstream sends is read defensively. Only an event that is exactly `data: [DONE]` ends
an OpenAI stream, not those bytes inside a chunk's text. An event longer than `MAX_EVENT_BYTES`
(see `EventFramer`) is relayed unread, and the usage of that stream becomes unknown (-1, -1):
the estimate stays charged rather than a count read around a gap. Token counts that are not
plausible integers make the usage unknown too (`gateway.translate.vocabulary.usage_counts`).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from gateway.api.event_framer import MAX_EVENT_BYTES, EventFramer, Framed
from gateway.api.openai_wire import Usage
from gateway.translate import encode_anthropic_event, encode_openai_chunk
from gateway.translate.vocabulary import token_count, usage_counts

__all__ = ["MAX_EVENT_BYTES", "AnthropicStreamTap", "OpenAIStreamTap", "StreamShaper"]

_UNKNOWN = (-1, -1)


class _UsageChunk(msgspec.Struct):
    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


class _AnthropicUsage(msgspec.Struct):
    input_tokens: object = None
    output_tokens: object = None
    cache_creation_input_tokens: object = None
    cache_read_input_tokens: object = None


class _AnthropicMessage(msgspec.Struct):
    usage: _AnthropicUsage | None = None


class _AnthropicEvent(msgspec.Struct):
    type: str = ""
    usage: _AnthropicUsage | None = None
    message: _AnthropicMessage | None = None


_usage_decoder = msgspec.json.Decoder(_UsageChunk)
_event_decoder = msgspec.json.Decoder(_AnthropicEvent)
_ANTHROPIC_MARKERS = (b"message_start", b"message_delta", b"message_stop", b"error")


class StreamShaper(Protocol):
    """What the relay needs of a stream transformer (the translators have the same shape)."""

    @property
    def usage(self) -> tuple[int, int] | None: ...

    @property
    def completed(self) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def _data_of(event: bytes) -> bytes | None:
    """The data of one event (its `data:` lines joined by LF, as SSE defines), None if it has none.

    `event` has LF line ends.
    """
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line[:5] == b"data:"]
    return b"\n".join(lines) if lines else None


def _has_done_event(lf: bytes) -> bool:
    """Whether an event of `lf` (LF line ends) has exactly `[DONE]` as its data.

    Only the events around each `[DONE]` are looked at. An event found this way may start with
    more LFs than the one `split(b"\\n\\n")` gives; they are empty lines, which `_data_of` skips.
    """
    at = lf.find(b"[DONE]")
    while at >= 0:
        start = lf.rfind(b"\n\n", 0, at) + 2  # 1 when there is none: the first event
        end = lf.find(b"\n\n", at)
        if _data_of(lf[start if start > 1 else 0 : end if end >= 0 else len(lf)]) == b"[DONE]":
            return True
        at = lf.find(b"[DONE]", at + 6)
    return False


def _rejoins(complete: bytes) -> bool:
    """Whether splitting `complete` into events and joining them again gives the same bytes:
    LF line ends, one blank line between events (checked at once for a one-line event)."""
    end = len(complete) - 2
    if complete.find(b"\n") == end:  # one line, then its blank line
        return complete[end - 1 : end] != b"\r"
    return b"\r" not in complete and b"\n\n\n" not in complete and complete[:2] != b"\n\n"


def _relayed(framed: Framed, events: bytes) -> bytes:
    """What goes to the client: the unread parts of `framed` around the (filtered) events."""
    before, _, after = framed
    if not before and not after:
        return events
    return before + events + after


class OpenAIStreamTap:
    """OpenAI chunks pass through; the usage-only chunk is hidden when Keyway asked for it."""

    __slots__ = ("_framer", "_hide_usage", "completed", "usage")

    def __init__(self, *, hide_usage_chunk: bool, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._hide_usage = hide_usage_chunk
        self._framer = EventFramer(max_event_bytes)
        self.usage: tuple[int, int] | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> bytes:
        framed = self._framer.feed(chunk)
        events = self._events(framed[1]) if framed[1] else b""
        if self._framer.overflowed:
            self.usage = _UNKNOWN
        return _relayed(framed, events)

    def _events(self, complete: bytes) -> bytes:
        if b"[DONE]" in complete and not self.completed:
            self.completed = _has_done_event(complete.replace(b"\r\n", b"\n"))
        at = complete.find(b'"usage"')
        if at < 0:
            return complete
        if not _rejoins(complete):
            return self._each_event(complete)
        # Only an event with a usage that is not null is read (with include_usage, every chunk
        # says `"usage":null`); the others, as `_each_event` would join them again, stay as
        # they are. Not looked for: a usage key spelled with escapes (`"us\u0061ge"`) in an
        # event whose plain `"usage"` keys are null, which `_each_event` would read: the usage
        # is the upstream's own to report, and one so spelled is not worth a scan of each chunk.
        kept: list[bytes] = []
        copied = 0
        while at >= 0:
            if complete.startswith(b":null", at + 7):
                at = complete.find(b'"usage"', at + 12)
                continue
            before = complete.rfind(b"\n\n", 0, at)
            start = before + 2 if before >= 0 else 0
            end = complete.find(b"\n\n", at) + 2  # `complete` ends with a blank line
            event = complete[start : end - 2]
            if event.startswith(b"data: {") and self._read_usage(event[6:]) and self._hide_usage:
                kept.append(complete[copied:start])
                copied = end
            at = complete.find(b'"usage"', end)
        if not copied:
            return complete
        kept.append(complete[copied:])
        return b"".join(kept)

    def _each_event(self, complete: bytes) -> bytes:
        """Every event read in turn (line ends made LF, empty events dropped)."""
        out: list[bytes] = []
        for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
            if not event:
                continue
            if event.startswith(b"data: {") and b'"usage"' in event:
                usage_only = self._read_usage(event[6:])
                if usage_only and self._hide_usage:
                    continue
            out.append(event + b"\n\n")
        return b"".join(out)

    def _read_usage(self, payload: bytes) -> bool:
        """Record the usage of one chunk; True when it is the usage-only chunk."""
        try:
            reply = _usage_decoder.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return False
        if reply.usage is None:
            return False
        if not self._framer.overflowed:
            self.usage = reply.usage.counts()
        return not reply.choices

    def finish(self) -> bytes:
        tail = self._framer.rest()
        if self.completed:
            return tail
        error = {
            "error": {
                "message": "the upstream stream ended before completion",
                "type": "upstream_error",
                "code": "upstream_cut",
            }
        }
        return encode_openai_chunk(error)


class AnthropicStreamTap:
    """Anthropic events pass through; usage from message_start and message_delta."""

    __slots__ = ("_errored", "_framer", "_input", "_output", "completed", "usage")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._framer = EventFramer(max_event_bytes)
        self._errored = False
        self._input = -1  # -1: not reported yet, or malformed
        self._output = 0
        self.usage: tuple[int, int] | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> bytes:
        framed = self._framer.feed(chunk)
        complete = framed[1]
        if complete and any(m in complete for m in _ANTHROPIC_MARKERS):
            for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
                if any(m in event for m in _ANTHROPIC_MARKERS):
                    payload = _data_of(event)
                    if payload is not None:
                        self._read(payload)
        if self._framer.overflowed:
            self.usage = _UNKNOWN
        return _relayed(framed, complete)

    def _read(self, payload: bytes) -> None:
        try:
            event = _event_decoder.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return
        usage = event.message.usage if event.message is not None else event.usage
        if usage is not None:
            self._add_usage(usage)
        if event.type == "message_stop":
            self.completed = True
        elif event.type == "error":
            self._errored = True

    def _add_usage(self, usage: _AnthropicUsage) -> None:
        """Counts are cumulative (message_start: the input; message_delta: the output so far):
        a later count replaces an earlier one, a malformed one included."""
        if usage.input_tokens is not None:
            self._input, _ = usage_counts(
                usage.input_tokens,
                None,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            )
        if usage.output_tokens is not None:
            self._output = token_count(usage.output_tokens)
        known = self._input >= 0 and self._output >= 0 and not self._framer.overflowed
        self.usage = (self._input, self._output) if known else _UNKNOWN

    def finish(self) -> bytes:
        tail = self._framer.rest()
        if self.completed or self._errored:  # an upstream error event already told the client
            return tail
        return encode_anthropic_event(
            "error",
            {
                "type": "error",
                "error": {
                    "type": "api_error",
                    "message": "the upstream stream ended before completion",
                },
            },
        )
