"""OpenAI chat requests become the Anthropic Messages request that asks the same thing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.request_to_anthropic import DEFAULT_MAX_TOKENS, openai_chat_to_anthropic

from .golden import assert_golden_json, sample_json

MODEL = "claude-sonnet-4-5-20250929"


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return openai_chat_to_anthropic(body, MODEL)


def test_golden_request() -> None:
    assert_golden_json(
        "openai_request.anthropic.json",
        openai_chat_to_anthropic(sample_json("openai_request.json"), MODEL),
    )


def test_minimal_request_gets_a_max_tokens_and_nothing_else() -> None:
    assert translate(model="gpt-4o-mini") == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hi"}],
    }


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 100, "max_completion_tokens": 200}, 200),
        ({"max_tokens": None}, DEFAULT_MAX_TOKENS),
    ],
)
def test_max_tokens(limits: dict[str, Any], expected: int) -> None:
    assert translate(**limits)["max_tokens"] == expected


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(BadRequest) as caught:
        translate(max_tokens=0)
    assert caught.value.param == "max_tokens"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "system", "content": "Be brief."}], "Be brief."),
        (
            [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}],
            [{"type": "text", "text": "Be brief."}],
        ),
        (
            [{"role": "system", "content": "A"}, {"role": "developer", "content": "B"}],
            [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        ),
    ],
)
def test_system_and_developer_messages_become_the_system_prompt(
    messages: list[dict[str, Any]], expected: Any
) -> None:
    out = translate(messages=[*messages, {"role": "user", "content": "Hi"}])
    assert out["system"] == expected
    assert out["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_message_in_the_middle_is_hoisted() -> None:
    out = translate(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Now answer in French."},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert out["system"] == "Now answer in French."
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    out = translate(tools=tools, tool_choice=choice)
    assert out["tool_choice"] == expected
    assert out["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]


def test_parallel_tool_calls_false_without_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert translate(tools=tools, parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert translate(tools=tools, tool_choice="none", parallel_tool_calls=False)["tool_choice"] == {
        "type": "none"
    }


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in translate(tool_choice="none")


def test_stop_string_becomes_a_list_and_temperature_is_clamped() -> None:
    out = translate(stop="###", temperature=1.6, top_p=0.5, user="u-1", stream=False)
    assert out["stop_sequences"] == ["###"]
    assert out["temperature"] == 1
    assert out["top_p"] == 0.5
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["stream"] is False


def test_consecutive_tool_results_share_one_user_message() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": ""}}
    out = translate(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [dict(call, id="a"), dict(call, id="b")],
            },
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
            {"role": "assistant", "content": None, "tool_calls": [dict(call, id="c")]},
            {"role": "tool", "tool_call_id": "c", "content": "3"},
        ]
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                {"type": "tool_use", "id": "b", "name": "f", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "1"},
                {"type": "tool_result", "tool_use_id": "b", "content": "2"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "3"}]},
    ]


def test_file_part_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    }
    out = translate(messages=[{"role": "user", "content": [part]}])
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"n": 2}, "n"),
        ({"functions": [{"name": "f"}]}, None),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "a", "function": {"name": "f", "arguments": "{not json"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "a", "function": {"name": "f", "arguments": "[1, 2]"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "sometimes",
            },
            "tool_choice",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_requests_anthropic_cannot_serve_are_400(body: dict[str, Any], param: str | None) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert caught.value.status == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    "arguments",
    ["[" * 100_000, '{"a":' * 100_000, '{"a":' + "[" * 5000 + "]" * 5000 + "}"],
    ids=["array", "object", "closed"],
)
def test_tool_call_arguments_nested_too_deeply_are_a_bad_request(arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    with pytest.raises(BadRequest) as caught:
        translate(messages=messages)
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
