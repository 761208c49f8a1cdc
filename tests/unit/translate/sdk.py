"""Streams accumulated by the official SDKs' own code: an oracle independent of ours."""

from __future__ import annotations

from typing import Any

import msgspec
from anthropic.lib.streaming._messages import accumulate_event
from openai import omit
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.translate.sse import SSEParser

__all__ = [
    "anthropic_message_from_stream",
    "openai_completion_from_stream",
    "response_events",
    "response_from_stream",
]

_RESPONSE_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


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


def response_events(stream: bytes) -> list[Any]:
    """The Responses API events of ``stream``, each validated by the OpenAI SDK's own types."""
    events = []
    for event in SSEParser().feed(stream):
        data = msgspec.json.decode(event.data)
        assert data["type"] == event.event, "the event name repeats the data's type"
        events.append(_RESPONSE_EVENT.validate_python(data))
    return events


def response_from_stream(stream: bytes) -> dict[str, Any]:
    """The response the OpenAI SDK assembles from a Responses API event stream (its
    ``client.responses.stream(...).get_final_response()``)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    events = response_events(stream)
    assert events and events[-1].type == "response.completed", "it ends on response.completed"
    for event in events:
        state.handle_event(event)
    final = state._completed_response  # what get_final_response() returns
    assert final is not None
    result: dict[str, Any] = final.model_dump(exclude_none=True)
    return result
