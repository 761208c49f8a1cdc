"""Responses API requests become the Anthropic Messages request that asks the same thing, and
what Anthropic cannot honour is a 400 that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.request_to_anthropic import DEFAULT_MAX_TOKENS
from gateway.translate.responses_to_anthropic import responses_to_anthropic

from .golden import assert_golden_json, sample_json

MODEL = "claude-sonnet-4-5-20250929"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "name": "get_weather", "parameters": SCHEMA}


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("input", "Hi")
    return responses_to_anthropic(body, MODEL)


def refused(**body: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    return caught.value


def test_golden_request() -> None:
    assert_golden_json(
        "responses_request.anthropic.json",
        responses_to_anthropic(sample_json("responses_request.json"), MODEL),
    )


def test_a_string_input_is_one_user_message_with_the_default_limit() -> None:
    assert translate(model="claude-agent") == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_instructions_become_the_system_prompt() -> None:
    assert translate(instructions="Be brief.")["system"] == "Be brief."
    items = [{"role": "system", "content": "Speak French."}, {"role": "user", "content": "Hi"}]
    out = translate(instructions="Be brief.", input=items)
    assert out["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Speak French."},
    ]
    assert "system" not in translate(instructions="")


@pytest.mark.parametrize(("given", "expected"), [(100, 100), (None, DEFAULT_MAX_TOKENS)])
def test_max_output_tokens_becomes_max_tokens(given: int | None, expected: int) -> None:
    assert translate(max_output_tokens=given)["max_tokens"] == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, "many", True])
def test_max_output_tokens_must_be_a_positive_integer(value: Any) -> None:
    assert refused(max_output_tokens=value).param == "max_output_tokens"


def test_sampling_user_and_stream() -> None:
    out = translate(temperature=1.6, top_p=0.5, user="u-1", stream=False)
    assert (out["temperature"], out["top_p"], out["stream"]) == (1, 0.5, False)
    assert out["metadata"] == {"user_id": "u-1"}
    assert translate(safety_identifier="s-1")["metadata"] == {"user_id": "s-1"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    out = translate(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert out["tools"] == [{"name": "get_weather", "input_schema": SCHEMA}]


def test_strict_tools_stay_strict_and_parallel_calls_can_be_turned_off() -> None:
    tool = {**WEATHER, "description": "Weather.", "strict": True}
    out = translate(tools=[tool], parallel_tool_calls=False)
    assert out["tools"] == [
        {"name": "get_weather", "description": "Weather.", "input_schema": SCHEMA, "strict": True}
    ]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_allowed_tools_leave_the_others_out() -> None:
    other = {"type": "function", "name": "get_time"}
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "function", "name": "get_time"}]}  # fmt: skip
    out = translate(tools=[WEATHER, other], tool_choice=choice)
    assert out["tools"] == [{"name": "get_time", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "any"}


def test_json_schema_text_format_becomes_output_config_format() -> None:
    fmt = {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}
    assert translate(text={"format": fmt, "verbosity": "low"})["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}
    }
    assert "output_config" not in translate(text={"format": {"type": "text"}})


def test_reasoning_effort_becomes_thinking() -> None:
    out = translate(reasoning={"effort": "medium", "summary": "auto"})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] == DEFAULT_MAX_TOKENS + 8192
    assert "thinking" not in translate(reasoning={"effort": "none"})


@pytest.mark.parametrize("store", [True, False, None])
def test_store_is_accepted_either_way(store: bool | None) -> None:
    assert "store" not in translate(store=store)


def test_fields_that_ask_for_nothing_anthropic_lacks_are_dropped() -> None:
    out = translate(
        metadata={"k": "v"}, service_tier="flex", prompt_cache_key="p", truncation="auto",
        prompt_cache_retention="24h", stream_options={"include_obfuscation": False},
        max_tool_calls=3, include=["reasoning.encrypted_content"], top_logprobs=0,
        background=False, previous_response_id=None, conversation=None, unknown_field=None,
    )  # fmt: skip
    assert out == translate()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"seed": 7}, "seed"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"tools": [WEATHER, {"type": "custom", "name": "x"}]}, "tools[1]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format"),
        ({"text": {"other": 1}}, "text.other"),
        ({"reasoning": {"effort": "low", "mode": "deep"}}, "reasoning.mode"),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    error = refused(**body)
    assert (error.param, error.code, error.status) == (param, "unsupported_parameter", 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "system", "content": "only a system prompt"}]}, "input"),
        ({"instructions": ["x"]}, "instructions"),
        ({"store": "yes"}, "store"),
        ({"include": "all"}, "include"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"metadata": ["x"]}, "metadata"),
        ({"tools": {"name": "f"}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"text": "json"}, "text"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"reasoning": "high"}, "reasoning"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ],
)
def test_malformed_fields_are_a_bad_request_naming_them(body: dict[str, Any], param: str) -> None:
    assert refused(**body).param == param


def test_previous_response_id_says_how_to_do_without_it() -> None:
    assert "send the whole conversation in `input`" in refused(previous_response_id="r").message
