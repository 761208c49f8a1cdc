"""Relay SSE streams that need no translation, event by event, reading usage on the way.

A tap has the interface of the translators in `gateway.translate` (feed / finish / usage /
completed), so the relay treats a passthrough and a translated stream alike. Events are
forwarded as soon as they are complete, never re-encoded; a stream that ends before its end
event gets an error event instead of a clean end.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from gateway.api.openai_wire import Usage
from gateway.translate import encode_anthropic_event, encode_openai_chunk

__all__ = ["AnthropicStreamTap", "OpenAIStreamTap", "StreamShaper", "split_complete"]


class _UsageChunk(msgspec.Struct):
    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


class _AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _AnthropicMessage(msgspec.Struct):
    usage: _AnthropicUsage | None = None


class _AnthropicEvent(msgspec.Struct):
    type: str = ""
    usage: _AnthropicUsage | None = None
    message: _AnthropicMessage | None = None


_usage_decoder = msgspec.json.Decoder(_UsageChunk)
_event_decoder = msgspec.json.Decoder(_AnthropicEvent)


class StreamShaper(Protocol):
    """What the relay needs of a stream transformer (the translators have the same shape)."""

    @property
    def usage(self) -> tuple[int, int] | None: ...

    @property
    def completed(self) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def split_complete(data: bytes) -> tuple[bytes, bytes]:
    """(complete events, incomplete tail) at the last blank line."""
    cut = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
    if cut < 0:
        return b"", data
    end = cut + (4 if data[cut : cut + 4] == b"\r\n\r\n" else 2)
    return data[:end], data[end:]


class OpenAIStreamTap:
    """OpenAI chunks pass through; the usage-only chunk is hidden when Keyway asked for it."""

    __slots__ = ("_hide_usage", "_tail", "completed", "usage")

    def __init__(self, *, hide_usage_chunk: bool) -> None:
        self._hide_usage = hide_usage_chunk
        self._tail = b""
        self.usage: tuple[int, int] | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> bytes:
        complete, self._tail = split_complete(self._tail + chunk if self._tail else chunk)
        if not complete:
            return b""
        if b"[DONE]" in complete:
            self.completed = True
        if b'"usage"' not in complete:
            return complete
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
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        if reply.usage is None:
            return False
        self.usage = (reply.usage.prompt_tokens, reply.usage.completion_tokens)
        return not reply.choices

    def finish(self) -> bytes:
        tail, self._tail = self._tail, b""
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

    __slots__ = ("_errored", "_input", "_output", "_tail", "completed", "usage")

    def __init__(self) -> None:
        self._tail = b""
        self._errored = False
        self._input = 0
        self._output = 0
        self.usage: tuple[int, int] | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> bytes:
        complete, self._tail = split_complete(self._tail + chunk if self._tail else chunk)
        if not complete:
            return b""
        if any(
            m in complete for m in (b"message_start", b"message_delta", b"message_stop", b"error")
        ):
            for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        self._read(line[5:].strip())
        return complete

    def _read(self, payload: bytes) -> None:
        try:
            event = _event_decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        usage = event.message.usage if event.message is not None else event.usage
        if usage is not None:
            if usage.input_tokens is not None:
                self._input = (
                    usage.input_tokens
                    + (usage.cache_creation_input_tokens or 0)
                    + (usage.cache_read_input_tokens or 0)
                )
            if usage.output_tokens is not None:
                self._output = usage.output_tokens
            self.usage = (self._input, self._output)
        if event.type == "message_stop":
            self.completed = True
        elif event.type == "error":
            self._errored = True

    def finish(self) -> bytes:
        tail, self._tail = self._tail, b""
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
