"""How much model text a relayed stream carried: the charge of a stream that never reports usage.

The meter reads the events as the client receives them (whatever the dialect pairing, the
client's dialect), and adds up the UTF-8 bytes of the text they carry: OpenAI chat and
completion deltas (content, reasoning, tool-call arguments), Anthropic content-block deltas
(text, thinking, partial JSON) and Responses API `*.delta` events. Each event is decoded once,
with only those fields declared; an event that is not JSON (or is too deep) counts nothing.

Most streams report their usage (Keyway asks OpenAI for it; Anthropic always sends it), and
then the count is never asked for. So events are only held (references to the bytes already
sent, up to `HOLD_BYTES`) and decoded when the count is asked for or the hold is full: a short
stream that reports its usage costs no decoding at all, and a long one is counted as it goes.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["HOLD_BYTES", "TextMeter"]

HOLD_BYTES: Final = 32 * 1024
"""Event bytes held uncounted per stream; past it they are counted and let go."""


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


_decode = msgspec.json.Decoder(_Event).decode


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _delta_bytes(delta: _Delta) -> int:
    n = 0
    if delta.content:
        n += _utf8(delta.content)
    if delta.reasoning_content:
        n += _utf8(delta.reasoning_content)
    if delta.text:
        n += _utf8(delta.text)
    if delta.thinking:
        n += _utf8(delta.thinking)
    if delta.partial_json:
        n += _utf8(delta.partial_json)
    if delta.tool_calls:
        for call in delta.tool_calls:
            function = call.function
            if function is not None and function.arguments:
                n += _utf8(function.arguments)
    return n


class TextMeter:
    """Counts the model text in whole SSE events, as they are sent to the client."""

    __slots__ = ("_counted", "_held", "_held_bytes")

    def __init__(self) -> None:
        self._counted = 0
        self._held: list[bytes] = []
        self._held_bytes = 0

    def feed(self, events: bytes) -> None:
        if b"delta" not in events and b'"text"' not in events:
            return
        self._held.append(events)
        self._held_bytes += len(events)
        if self._held_bytes > HOLD_BYTES:
            self._count_held()

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of model text in everything fed so far."""
        self._count_held()
        return self._counted

    def _count_held(self) -> None:
        held = self._held
        if not held:
            return
        self._held = []
        self._held_bytes = 0
        n = 0
        for events in held:
            for line in events.split(b"\n"):
                if line[:5] == b"data:" and b"{" in line:
                    n += _event_bytes(line[5:])
        self._counted += n


def _event_bytes(payload: bytes) -> int:
    try:
        event = _decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return 0
    n = 0
    delta = event.delta
    if isinstance(delta, str):
        n += _utf8(delta)
    elif delta is not None:
        n += _delta_bytes(delta)
    if event.choices:
        for choice in event.choices:
            if choice.delta is not None:
                n += _delta_bytes(choice.delta)
            if choice.text:
                n += _utf8(choice.text)
    return n
