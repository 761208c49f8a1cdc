"""There and back again: a translated request or answer keeps every field that has a counterpart."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from gateway.translate.request_to_anthropic import openai_chat_to_anthropic
from gateway.translate.request_to_openai import anthropic_to_openai_chat
from gateway.translate.response import (
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic_message,
)

from .golden import sample_json


def openai_semantics(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of an OpenAI request that both dialects can express, in one spelling."""
    messages = []
    for message in copy.deepcopy(body["messages"]):
        message.pop("name", None)
        if message["role"] == "developer":
            message["role"] = "system"
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    part["image_url"].pop("detail", None)
        for call in message.get("tool_calls", []):
            # Arguments are JSON text: equal when they decode to the same object.
            call["function"]["arguments"] = msgspec.json.decode(call["function"]["arguments"])
        messages.append(message)
    stop = body.get("stop")
    tools = [
        {
            "type": "function",
            "function": {k: v for k, v in tool["function"].items() if k != "strict"},
        }
        for tool in body.get("tools", [])
    ]
    return {
        "messages": messages,
        "tools": tools,
        "tool_choice": body.get("tool_choice"),
        "parallel_tool_calls": body.get("parallel_tool_calls"),
        "stop": [stop] if isinstance(stop, str) else stop,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "user": body.get("user"),
        "stream": body.get("stream"),
    }


def merged_system(semantics: dict[str, Any]) -> dict[str, Any]:
    """System messages as one list of texts at the front: where Anthropic keeps them."""
    texts: list[str] = []
    rest = []
    for message in semantics["messages"]:
        if message["role"] != "system":
            rest.append(message)
        elif isinstance(message["content"], str):
            texts.append(message["content"])
        else:
            texts.extend(part["text"] for part in message["content"])
    return dict(semantics, messages=rest, system=texts)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"stop": "END", "stream": False, "max_completion_tokens": None, "max_tokens": 64},
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tool_choice": "required", "parallel_tool_calls": None},
        {"tool_choice": "none", "parallel_tool_calls": None},
    ],
)
def test_openai_request_survives_a_trip_through_anthropic(change: dict[str, Any]) -> None:
    original = dict(sample_json("openai_request.json"), **change)
    anthropic = openai_chat_to_anthropic(original, "claude")
    back = anthropic_to_openai_chat(anthropic, "gpt-4o")
    assert back["model"] == "gpt-4o"
    assert merged_system(openai_semantics(back)) == merged_system(openai_semantics(original))


def test_single_string_system_prompt_survives_as_a_string() -> None:
    original = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 10,
    }
    back = anthropic_to_openai_chat(openai_chat_to_anthropic(original, "claude"), "gpt")
    assert back["messages"] == original["messages"]


def test_anthropic_request_survives_a_trip_through_openai() -> None:
    original = sample_json("anthropic_request.json")
    back = openai_chat_to_anthropic(anthropic_to_openai_chat(original, "gpt-4o"), "claude")
    expected = copy.deepcopy(original)
    # What OpenAI cannot carry: cache hints, thinking, top_k, tool_result.is_error.
    for name in ("top_k", "thinking"):
        del expected[name]
    expected["model"] = "claude"
    for block in expected["system"]:
        block.pop("cache_control", None)
    for tool in expected["tools"]:
        tool.pop("cache_control", None)
    for message in expected["messages"]:
        if isinstance(message["content"], list):
            message["content"] = [b for b in message["content"] if b["type"] != "thinking"]
            for block in message["content"]:
                block.pop("cache_control", None)
                block.pop("is_error", None)
    assert back == expected


def test_anthropic_message_survives_a_trip_through_openai() -> None:
    original = sample_json("anthropic_message.json")
    back = openai_chat_to_anthropic_message(anthropic_message_to_openai_chat(original, "m"), "m")
    assert back["id"] == original["id"]
    assert back["stop_reason"] == original["stop_reason"]
    texts = "".join(b["text"] for b in original["content"] if b["type"] == "text")
    tool_uses = [b for b in original["content"] if b["type"] == "tool_use"]
    assert back["content"] == [{"type": "text", "text": texts}, *tool_uses]
    usage, back_usage = original["usage"], back["usage"]
    # Cache writes have no OpenAI field; they stay counted, as ordinary input.
    assert back_usage["cache_read_input_tokens"] == usage["cache_read_input_tokens"]
    assert back_usage["input_tokens"] + back_usage["cache_read_input_tokens"] == (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    assert back_usage["output_tokens"] == usage["output_tokens"]


def test_openai_completion_survives_a_trip_through_anthropic() -> None:
    original = sample_json("openai_chat_completion.json")
    back = anthropic_message_to_openai_chat(
        openai_chat_to_anthropic_message(original, "gpt-4o"), "gpt-4o", created=original["created"]
    )
    assert back["id"] == original["id"]
    (choice,), (original_choice,) = back["choices"], original["choices"]
    assert choice["finish_reason"] == original_choice["finish_reason"]
    assert choice["message"]["content"] == original_choice["message"]["content"]
    assert choice["message"]["tool_calls"] == original_choice["message"]["tool_calls"]
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert back["usage"][name] == original["usage"][name]
    assert back["usage"]["prompt_tokens_details"]["cached_tokens"] == 1024
