"""Anthropic Messages requests become the OpenAI chat request that asks the same thing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.request_to_openai import anthropic_to_openai_chat

from .golden import assert_golden_json, sample_json

MODEL = "gpt-4o-2024-08-06"


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return anthropic_to_openai_chat(body, MODEL)


def test_golden_request() -> None:
    assert_golden_json(
        "anthropic_request.openai.json",
        anthropic_to_openai_chat(sample_json("anthropic_request.json"), MODEL),
    )


def test_minimal_request() -> None:
    assert translate(model="claude", max_tokens=300, system="Be brief.") == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 300,
    }


def test_streaming_asks_upstream_for_usage() -> None:
    assert translate(stream=True)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in translate(stream=False)
    assert translate(stream=False)["stream"] is False
    assert "stream" not in translate()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "f"},
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    out = translate(tools=[{"name": "f", "input_schema": {"type": "object"}}], tool_choice=choice)
    assert {k: out[k] for k in expected} == expected
    assert ("parallel_tool_calls" in out) == ("parallel_tool_calls" in expected)


def test_assistant_turn_of_only_tool_use_has_null_content_and_thinking_is_dropped() -> None:
    out = translate(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1, "é"]}},
                ],
            },
        ]
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "f", "arguments": '{"x":[1,"é"]}'},
            }
        ],
    }


def test_tool_results_come_first_and_their_images_follow_in_a_user_message() -> None:
    screenshot = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    out = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "done"}, screenshot],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_2"},
                    {"type": "text", "text": "What do you see?"},
                ],
            }
        ]
    )
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "done"}]},
        {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "What do you see?"},
            ],
        },
    ]


def test_text_document_becomes_text() -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
    }
    out = translate(messages=[{"role": "user", "content": [document]}])
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "notes"}]}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "Hi"}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image"}]}]},
            "messages[0].content[0]",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"tools": [{"name": "f"}], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "server_tool_use", "id": "x"}]}
                ]
            },
            "messages[0].content[0]",
        ),
        ({"system": 42}, "system"),
    ],
)
def test_requests_openai_cannot_serve_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert caught.value.param == param


def test_a_tool_use_input_nested_too_deeply_is_a_bad_request() -> None:
    nested: Any = {}
    for _ in range(10_000):
        nested = {"a": nested}
    block = {"type": "tool_use", "id": "t1", "name": "f", "input": nested}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [block]},
    ]
    with pytest.raises(BadRequest) as caught:
        translate(messages=messages)
    assert caught.value.param == "messages[1].content[0].input"


CLAUDE_CODE_USER_ID = (
    '{"device_id":"9f2c1e7a4b3d8e6f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678","account_uuid":'
    '"6a1f3c2e-0b9d-4e8a-9f7c-5d4e3b2a1c0f","session_id":"2b7e151628aed2a6abf7158809cf4f3c"}'
)


def test_system_messages_within_messages_stay_where_they_are() -> None:
    # Claude Code's mid-conversation system messages: a string, or text blocks with cache hints
    out = translate(
        system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "x"}}],
        messages=[
            {"role": "user", "content": "Fix the bug."},
            {"role": "assistant", "content": "Looking."},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": "Go on."},
            {
                "role": "system",
                "content": [{"type": "text", "text": "Reminder.", "cache_control": {"type": "x"}}],
            },
        ],
    )
    assert out["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "You are Claude Code."}]},
        {"role": "user", "content": "Fix the bug."},
        {"role": "assistant", "content": "Looking."},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": "Go on."},
        {"role": "system", "content": [{"type": "text", "text": "Reminder."}]},
    ]


def test_an_empty_system_message_is_left_out() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": []},
        {"role": "system", "content": ""},
    ]
    assert translate(messages=messages)["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_user_id_longer_than_openai_takes_becomes_a_stable_digest() -> None:
    assert len(CLAUDE_CODE_USER_ID) > 64
    user = translate(metadata={"user_id": CLAUDE_CODE_USER_ID})["user"]
    assert len(user) == 64 and user.startswith("sha256:")
    assert user == translate(metadata={"user_id": CLAUDE_CODE_USER_ID})["user"]
    assert user != translate(metadata={"user_id": CLAUDE_CODE_USER_ID + " "})["user"]
    assert translate(metadata={"user_id": "u" * 64})["user"] == "u" * 64


def test_a_tool_keeps_its_strict_flag() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}, "strict": True}
    assert translate(tools=[tool])["tools"][0]["function"]["strict"] is True
    assert "strict" not in translate(tools=[dict(tool, strict=None)])["tools"][0]["function"]


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "body",
    [
        {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        {"output_format": {"type": "json_schema", "schema": SCHEMA}},  # the beta spelling
    ],
)
def test_structured_output_becomes_a_strict_response_format(body: dict[str, Any]) -> None:
    assert translate(**body)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }


def test_thinking_becomes_reasoning_effort_only_for_a_model_that_reasons() -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 31999},
    }
    assert anthropic_to_openai_chat(body, "o3")["reasoning_effort"] == "high"
    assert anthropic_to_openai_chat(dict(body), "gpt-5-mini")["reasoning_effort"] == "high"
    assert "reasoning_effort" not in anthropic_to_openai_chat(body, "gpt-4o")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"output_config": {"format": {"type": "regex", "pattern": "x"}}}, "output_config.format"),
        ({"output_format": {"type": "grammar"}}, "output_format"),
        ({"container": "container_011"}, "container"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
    ],
)
def test_fields_openai_cannot_honour_are_unsupported_parameters(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", param)
