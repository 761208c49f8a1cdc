"""How much model text a relayed stream carried: the charge of a stream that never reports usage.

The meter reads the events as the client receives them (whatever the dialect pairing, the
client's dialect), and adds up the UTF-8 bytes of the text they carry: OpenAI chat and
completion deltas (content, reasoning, tool-call arguments), Anthropic content-block deltas
(text, thinking, partial JSON) and Responses API `*.delta` events. Each event is decoded once,
with only those fields declared; an event that is not JSON (or is too deep) counts nothing.
"""

from __future__ import annotations

import msgspec

__all__ = ["TextMeter"]


class _Function(msgspec.Struct):
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Event(msgspec.Struct):
    choices: list[_Choice] | None = None
    delta: _Delta | str | None = None


_decoder = msgspec.json.Decoder(_Event)


def _delta_bytes(delta: _Delta) -> int:
    n = 0
    for text in (delta.content, delta.reasoning_content, delta.text, delta.thinking,
                 delta.partial_json):  # fmt: skip
        if text:
            n += len(text.encode())
    for call in delta.tool_calls or ():
        if call.function is not None and call.function.arguments:
            n += len(call.function.arguments.encode())
    return n


class TextMeter:
    """Counts the model text in whole SSE events, as they are sent to the client."""

    __slots__ = ("text_bytes",)

    def __init__(self) -> None:
        self.text_bytes = 0

    def feed(self, events: bytes) -> None:
        if b"delta" not in events and b'"text"' not in events:
            return
        for line in events.split(b"\n"):
            if line.startswith(b"data:") and b"{" in line:
                self.text_bytes += _event_bytes(line[5:])


def _event_bytes(payload: bytes) -> int:
    try:
        event = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return 0
    n = 0
    if isinstance(event.delta, str):
        n += len(event.delta.encode())
    elif event.delta is not None:
        n += _delta_bytes(event.delta)
    for choice in event.choices or ():
        if choice.delta is not None:
            n += _delta_bytes(choice.delta)
        if choice.text:
            n += len(choice.text.encode())
    return n
