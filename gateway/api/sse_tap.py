"""Relay an OpenAI SSE stream event by event, reading usage from it on the way.

Events are forwarded as soon as they are complete (the upstream's own boundaries), never
re-encoded. When Keyway asked for `include_usage` on the client's behalf, the usage-only chunk
is taken out of the stream the client sees.
"""

from __future__ import annotations

import msgspec

from gateway.api.openai_wire import Usage

__all__ = ["OpenAIStreamTap"]


class _UsageChunk(msgspec.Struct):
    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


_usage_decoder = msgspec.json.Decoder(_UsageChunk)


class OpenAIStreamTap:
    """Feed upstream bytes, get the bytes to forward; `usage` and `done` once they were seen."""

    __slots__ = ("_hide_usage", "_tail", "done", "usage")

    def __init__(self, *, hide_usage_chunk: bool) -> None:
        self._hide_usage = hide_usage_chunk
        self._tail = b""
        self.usage: tuple[int, int] | None = None
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        cut = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
        if cut < 0:
            self._tail = data
            return b""
        end = cut + (4 if data[cut : cut + 4] == b"\r\n\r\n" else 2)
        complete, self._tail = data[:end], data[end:]
        if b"[DONE]" in complete:
            self.done = True
        if b'"usage"' not in complete:
            return complete
        out: list[bytes] = []
        for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
            if not event:
                continue
            if event.startswith(b"data: {") and b'"usage"' in event:
                hide = self._read_usage(event[6:])
                if hide and self._hide_usage:
                    continue
            out.append(event + b"\n\n")
        return b"".join(out)

    def _read_usage(self, payload: bytes) -> bool:
        """Record the usage of one chunk; True when the chunk is the usage-only one."""
        try:
            reply = _usage_decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        if reply.usage is None:
            return False
        self.usage = (reply.usage.prompt_tokens, reply.usage.completion_tokens)
        return not reply.choices

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail
