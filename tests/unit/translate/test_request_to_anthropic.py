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


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_json_schema_response_format_becomes_output_config_format() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": SCHEMA, "strict": True},
    }
    assert translate(response_format=response_format)["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}
    }
    assert "output_config" not in translate(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "claude-sonnet-4-5-20250929",
            {
                "max_tokens": DEFAULT_MAX_TOKENS + 8192,
                "thinking": {"type": "enabled", "budget_tokens": 8192},
            },
        ),
        (
            "claude-sonnet-4-6",
            {
                "max_tokens": DEFAULT_MAX_TOKENS + 8192,
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": "medium"},
            },
        ),
        ("claude-3-5-haiku-latest", {"max_tokens": DEFAULT_MAX_TOKENS}),
    ],
)
def test_reasoning_effort_becomes_thinking_where_the_model_thinks(
    model: str, expected: dict[str, Any]
) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "medium"}
    out = openai_chat_to_anthropic(body, model)
    assert {k: out[k] for k in ("max_tokens", "thinking", "output_config") if k in out} == expected


def test_a_thinking_budget_fits_below_the_clients_limit() -> None:
    assert translate(reasoning_effort="high", max_completion_tokens=3000)["thinking"] == {
        "type": "enabled",
        "budget_tokens": 2999,
    }
    assert "thinking" not in translate(reasoning_effort="high", max_completion_tokens=1000)


def test_a_forced_tool_call_goes_without_thinking() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    out = translate(reasoning_effort="high", tools=tools, tool_choice="required")
    assert "thinking" not in out


def test_safety_identifier_stands_in_for_user() -> None:
    assert translate(safety_identifier="s-1")["metadata"] == {"user_id": "s-1"}
    assert translate(safety_identifier="s-1", user="u-1")["metadata"] == {"user_id": "u-1"}


def test_a_strict_tool_stays_strict() -> None:
    tool = {"type": "function", "function": {"name": "f", "strict": True}}
    assert translate(tools=[tool])["tools"][0]["strict"] is True
    tool["function"]["strict"] = False
    assert "strict" not in translate(tools=[tool])["tools"][0]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, None),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
    ],
)
def test_fields_anthropic_cannot_honour_are_unsupported_parameters(
    body: dict[str, Any], param: str | None
) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == (param or "response_format.json_schema.schema")


def test_fields_at_their_defaults_ask_for_nothing() -> None:
    plain = translate()
    assert translate(logprobs=False, logit_bias={}, modalities=["text"], n=1) == plain
    assert translate(reasoning_effort="none", top_logprobs=0) == plain
