"""Complete answers keep their text, tool calls, stop reason, usage and id across dialects."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from gateway.errors import UpstreamError
from gateway.translate.response import (
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic_message,
)

from .golden import assert_golden_json, sample_json

CREATED = 1741570283


def test_golden_anthropic_message_to_openai() -> None:
    out = anthropic_message_to_openai_chat(
        sample_json("anthropic_message.json"), "claude-sonnet", created=CREATED
    )
    assert_golden_json("anthropic_message.openai.json", out)
    ChatCompletion.model_validate(out, strict=False)  # the OpenAI SDK reads it


def test_golden_openai_completion_to_anthropic() -> None:
    out = openai_chat_to_anthropic_message(sample_json("openai_chat_completion.json"), "gpt-4o")
    assert_golden_json("openai_chat_completion.anthropic.json", out)
    Message.model_validate(out)  # the Anthropic SDK reads it


def test_cache_tokens_are_counted_in_prompt_tokens() -> None:
    out = anthropic_message_to_openai_chat(
        sample_json("anthropic_message.json"), "m", created=CREATED
    )
    # 2095 uncached + 2051 written to the cache + 4096 read from it.
    assert out["usage"] == {
        "prompt_tokens": 8242,
        "completion_tokens": 503,
        "total_tokens": 8745,
        "prompt_tokens_details": {"cached_tokens": 4096},
    }
    back = openai_chat_to_anthropic_message(sample_json("openai_chat_completion.json"), "m")
    assert back["usage"] == {
        "input_tokens": 93,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
        "output_tokens": 46,
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_to_finish_reason(stop_reason: str | None, finish_reason: str) -> None:
    message = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
    }
    out = anthropic_message_to_openai_chat(message, "m", created=CREATED)
    assert out["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_to_stop_reason(finish_reason: str | None, stop_reason: str) -> None:
    completion = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x"},
                "finish_reason": finish_reason,
            }
        ],
    }
    assert openai_chat_to_anthropic_message(completion, "m")["stop_reason"] == stop_reason


def test_text_only_message() -> None:
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "héllo 世界 👋"}],
        "model": "claude-3-5-haiku-latest",
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    assert anthropic_message_to_openai_chat(message, "claude-haiku", created=CREATED) == {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-haiku",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "héllo 世界 👋", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_refusal_and_unparseable_arguments() -> None:
    completion: dict[str, Any] = {
        "id": "chatcmpl-9",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": "I can't help with that.",
                },
                "finish_reason": "stop",
            }
        ],
    }
    out = openai_chat_to_anthropic_message(completion, "m")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"
    completion["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}
        ],
    }
    assert openai_chat_to_anthropic_message(completion, "m")["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "msg_1"},
        {"id": "msg_1", "content": [{"type": "tool_use", "input": {}}]},
        {"content": "text"},
    ],
)
def test_malformed_anthropic_message_is_an_upstream_error(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        anthropic_message_to_openai_chat(body, "m")


@pytest.mark.parametrize("body", [{"choices": []}, {"id": "x"}, {"choices": [{"message": None}]}])
def test_malformed_chat_completion_is_an_upstream_error(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        openai_chat_to_anthropic_message(body, "m")
