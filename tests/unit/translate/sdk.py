"""Streams accumulated by the official SDKs' own code: an oracle independent of ours."""

from __future__ import annotations

from typing import Any

import msgspec
from anthropic.lib.streaming._messages import accumulate_event
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from gateway.translate.sse import SSEParser

__all__ = ["anthropic_message_from_stream", "openai_completion_from_stream"]


def openai_completion_from_stream(stream: bytes) -> dict[str, Any]:
    """The chat completion the OpenAI SDK assembles from an OpenAI SSE stream."""
    state = ChatCompletionStreamState()
    events = SSEParser().feed(stream)
    assert events and events[-1].is_done, "an OpenAI stream ends with [DONE]"
    for event in events[:-1]:
        chunk = ChatCompletionChunk.model_validate(msgspec.json.decode(event.data))
        state.handle_chunk(chunk)
    result: dict[str, Any] = state.get_final_completion().model_dump(exclude_none=True)
    return result


def anthropic_message_from_stream(stream: bytes) -> dict[str, Any]:
    """The message the Anthropic SDK assembles from an Anthropic SSE stream."""
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    events = SSEParser().feed(stream)
    assert events and events[-1].event == "message_stop", "an Anthropic stream ends on message_stop"
    for event in events:
        data = msgspec.json.decode(event.data)
        assert data["type"] == event.event, "the event name repeats the data's type"
        if data["type"] != "ping":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    result: dict[str, Any] = snapshot.model_dump(exclude_none=True)
    return result
