"""Token counts from upstreams: charged only when they are plausible integers, else unknown.

The translators report usage for accounting through these rules, and show a malformed count to
the client as 0 (never as a negative number or a string).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.translate.response import (
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic_message,
)
from gateway.translate.stream_to_anthropic import OpenAIToAnthropicStream
from gateway.translate.stream_to_openai import AnthropicToOpenAIStream
from gateway.translate.vocabulary import (
    MAX_TOKEN_COUNT,
    anthropic_usage_counts,
    openai_usage_counts,
    token_count,
    usage_counts,
)

__all__: list[str] = []

UNKNOWN = (-1, -1)
BAD: list[Any] = [-1, 1.0, 1.5, True, False, "1", [1], {"n": 1}, MAX_TOKEN_COUNT + 1, 10**30,
                  float("inf"), float("nan")]  # fmt: skip


@pytest.mark.parametrize("value", [0, 1, 4096, MAX_TOKEN_COUNT])
def test_plausible_counts(value: int) -> None:
    assert token_count(value) == value


@pytest.mark.parametrize("value", [*BAD, None])
def test_implausible_counts(value: Any) -> None:
    assert token_count(value) == -1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((10, 5), (10, 5)),
        ((10, None), (10, 0)),
        ((10, 5, None, 3), (13, 5)),
        ((None, 5), UNKNOWN),
        ((MAX_TOKEN_COUNT, 0, MAX_TOKEN_COUNT), (MAX_TOKEN_COUNT, 0)),
        *[((bad, 5), UNKNOWN) for bad in BAD],
        *[((10, bad), UNKNOWN) for bad in BAD],
        *[((10, 5, bad), UNKNOWN) for bad in BAD],
    ],
)
def test_usage_counts(args: tuple[Any, ...], expected: tuple[int, int]) -> None:
    assert usage_counts(*args) == expected


@pytest.mark.parametrize("usage", [None, [], "x", 3])
def test_usage_that_is_not_an_object_is_unknown(usage: Any) -> None:
    assert openai_usage_counts(usage) == UNKNOWN
    assert anthropic_usage_counts(usage) == UNKNOWN


def sse(obj: Any, event: str | None = None) -> bytes:
    name = b"event: " + event.encode() + b"\n" if event else b""
    return name + b"data: " + msgspec.json.encode(obj) + b"\n\n"


@pytest.mark.parametrize("bad", BAD[:-2])  # JSON has no inf or nan
@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cache_read_input_tokens"])
def test_anthropic_stream_translated_with_implausible_usage(field: str, bad: Any) -> None:
    start_usage: dict[str, Any] = {"input_tokens": 20, "output_tokens": 1}
    delta_usage: dict[str, Any] = {"output_tokens": 7}
    (delta_usage if field == "output_tokens" else start_usage)[field] = bad
    stream = AnthropicToOpenAIStream("gpt-4o-mini", include_usage=True)
    out = stream.feed(
        sse({"type": "message_start", "message": {"id": "msg_1", "usage": start_usage}})
        + sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage})
        + sse({"type": "message_stop"})
    )
    assert stream.completed
    assert stream.usage == UNKNOWN
    chunks = [msgspec.json.decode(f[6:]) for f in out.split(b"\n\n") if f.startswith(b"data: {")]
    shown = chunks[-1]["usage"]
    assert all(
        type(shown[k]) is int and shown[k] >= 0 for k in ("prompt_tokens", "completion_tokens")
    )


@pytest.mark.parametrize("bad", BAD[:-2])
@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens"])
def test_openai_stream_translated_with_implausible_usage(field: str, bad: Any) -> None:
    usage: dict[str, Any] = {"prompt_tokens": 20, "completion_tokens": 7, field: bad}
    stream = OpenAIToAnthropicStream("claude")
    delta = {"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}
    out = stream.feed(
        sse({"id": "chatcmpl-1", "choices": [delta]})
        + sse({"id": "chatcmpl-1", "choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )
    assert stream.completed
    assert stream.usage == UNKNOWN
    assert b'"output_tokens":-' not in out and b'"input_tokens":-' not in out


def test_translated_streams_report_plausible_usage() -> None:
    stream = OpenAIToAnthropicStream("claude")
    usage = {"prompt_tokens": 20, "completion_tokens": 7,
             "prompt_tokens_details": {"cached_tokens": 5}}  # fmt: skip
    stream.feed(sse({"id": "c", "choices": [], "usage": usage}) + b"data: [DONE]\n\n")
    assert stream.usage == (20, 7)


@pytest.mark.parametrize("bad", BAD[:-2])
def test_complete_answers_show_implausible_counts_as_zero(bad: Any) -> None:
    message = {"id": "msg_1", "content": [{"type": "text", "text": "Hi"}],
               "stop_reason": "end_turn", "usage": {"input_tokens": bad, "output_tokens": bad}}  # fmt: skip
    usage = anthropic_message_to_openai_chat(message, "m", created=0)["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 0)
    assert anthropic_usage_counts(message["usage"]) == UNKNOWN
    chat = {"id": "c", "choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": bad, "completion_tokens": bad}}  # fmt: skip
    shown = openai_chat_to_anthropic_message(chat, "m")["usage"]
    assert (shown["input_tokens"], shown["output_tokens"]) == (0, 0)
    assert openai_usage_counts(chat["usage"]) == UNKNOWN


def test_tool_arguments_nested_too_deeply_in_an_answer_become_an_empty_input() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}
    chat = {"id": "c", "choices": [{"message": {"content": None, "tool_calls": [call]},
                                    "finish_reason": "tool_calls"}]}  # fmt: skip
    message = openai_chat_to_anthropic_message(chat, "m")
    assert message["content"][0]["input"] == {}
