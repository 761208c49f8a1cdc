"""The text meter (api/stream_text.py): the UTF-8 bytes of model text a relayed stream carried.

Whatever the dialect and however the events are cut into chunks, the count is the text's; the
meter holds at most `HOLD_BYTES` of events uncounted, and counting them late counts the same.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.api.stream_text import HOLD_BYTES, TextMeter

__all__: list[str] = []

TEXT = "Hello, wörld! ✓ "


def data(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def openai_chunk(text: str) -> bytes:
    return data({"choices": [{"index": 0, "delta": {"content": text}}], "usage": None})


EVENTS = {
    "openai chat": lambda t: openai_chunk(t),
    "openai tool call": lambda t: data(
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": t}}]}}]}
    ),
    "openai completion": lambda t: data({"choices": [{"index": 0, "text": t}]}),
    "anthropic": lambda t: (
        b"event: content_block_delta\n"
        + data({"type": "content_block_delta", "delta": {"type": "text_delta", "text": t}})
    ),
    "anthropic thinking": lambda t: data({"delta": {"thinking": t}}),
    "responses": lambda t: data({"type": "response.output_text.delta", "delta": t}),
}


@pytest.mark.parametrize("kind", sorted(EVENTS))
@pytest.mark.parametrize("events", [3, 2000])  # under and well over the hold
@pytest.mark.parametrize("chunked", ["per event", "joined"])
def test_the_count_is_the_utf8_bytes_of_the_text(kind: str, events: int, chunked: str) -> None:
    stream = [EVENTS[kind](TEXT) for _ in range(events)]
    meter = TextMeter()
    for chunk in stream if chunked == "per event" else [b"".join(stream)]:
        meter.feed(chunk)
        assert meter._held_bytes <= HOLD_BYTES or chunked == "joined"
    assert meter.text_bytes == events * len(TEXT.encode())
    assert meter.text_bytes == events * len(TEXT.encode()), "asking again counts nothing twice"


def test_the_count_goes_on_after_it_was_asked_for() -> None:
    meter = TextMeter()
    meter.feed(openai_chunk("ab"))
    assert meter.text_bytes == 2
    meter.feed(openai_chunk("✓"))
    assert meter.text_bytes == 5


@pytest.mark.parametrize(
    "chunk",
    [
        b'data: {"choices":[{"delta":{"content":"abc"}}]\n\n',  # cut JSON
        b'data: {"choices":' + b"[" * 100_000 + b"\n\n",  # too deep
        b'data: {"choices":[{"delta":{"content":7}}]}\n\n',  # not text
        b": a comment with delta\n\n",
        b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n',
        b"data: [DONE]\n\n",
    ],
)
def test_events_without_readable_text_count_nothing(chunk: bytes) -> None:
    meter = TextMeter()
    meter.feed(chunk)
    meter.feed(openai_chunk("xy"))
    assert meter.text_bytes == 2
