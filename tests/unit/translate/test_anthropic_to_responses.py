"""A complete Anthropic message becomes the Responses API ``response`` the OpenAI SDK reads."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Response

from gateway.errors import UpstreamError
from gateway.translate.anthropic_to_responses import (
    anthropic_message_to_response,
    response_settings,
)

from .golden import assert_golden_json, sample_json

CREATED = 1741570283
REQUEST = {"model": "claude-agent", "input": "Weather?", "instructions": "Be brief.",
           "tools": [{"type": "function", "name": "get_weather"}], "metadata": {"k": "v"},
           "store": True}  # fmt: skip


def translate(message: dict[str, Any], request: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = response_settings(REQUEST if request is None else request)
    return anthropic_message_to_response(message, "claude-sonnet", settings, created_at=CREATED)


def message(*content: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_01X", "type": "message", "role": "assistant", "model": "claude",
            "content": list(content), "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5}}  # fmt: skip


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def test_golden_response() -> None:
    out = translate(sample_json("anthropic_message.json"))
    assert_golden_json("anthropic_message.responses.json", out)
    parsed = Response.model_validate(out)  # the OpenAI SDK reads it
    assert parsed.output_text == "I'll check the weather and the local time."


def test_text_and_tool_calls_keep_their_order_as_items() -> None:
    call = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Nice"}}
    out = translate(message(text("Let me check."), call, text("Done.")))
    assert [(item["type"], item["id"]) for item in out["output"]] == [
        ("message", "msg_01X_0"),
        ("function_call", "fc_01A"),
        ("message", "msg_01X_2"),
    ]
    assert out["output"][1] == {
        "id": "fc_01A",
        "type": "function_call",
        "status": "completed",
        "call_id": "toolu_01A",
        "name": "get_weather",
        "arguments": '{"city":"Nice"}',
    }
    assert Response.model_validate(out).output_text == "Let me check.Done."


def test_usage_counts_cache_reads_and_writes_as_input() -> None:
    out = translate(sample_json("anthropic_message.json"))
    # 2095 uncached + 2051 written to the cache + 4096 read from it.
    assert out["usage"] == {
        "input_tokens": 8242,
        "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 2051},
        "output_tokens": 503,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8745,
    }


@pytest.mark.parametrize(
    ("stop_reason", "status", "details"),
    [
        ("end_turn", "completed", None),
        ("tool_use", "completed", None),
        ("stop_sequence", "completed", None),
        ("pause_turn", "completed", None),
        ("max_tokens", "incomplete", {"reason": "max_output_tokens"}),
        ("model_context_window_exceeded", "incomplete", {"reason": "max_output_tokens"}),
        ("refusal", "incomplete", {"reason": "content_filter"}),
    ],
)
def test_stop_reason_decides_the_status(
    stop_reason: str, status: str, details: dict[str, str] | None
) -> None:
    out = translate(message(text("a"), text("b"), stop_reason=stop_reason))
    assert (out["status"], out["incomplete_details"]) == (status, details)
    assert out["output"][-1]["status"] == status


def test_the_request_is_echoed_and_nothing_is_stored() -> None:
    out = translate(message(text("a")))
    assert out["id"] == "resp_01X" and out["object"] == "response"
    assert (out["model"], out["created_at"]) == ("claude-sonnet", CREATED)
    assert out["instructions"] == "Be brief."
    assert out["tools"] == REQUEST["tools"]
    assert out["metadata"] == {"k": "v"}
    assert out["store"] is False
    assert (out["tool_choice"], out["parallel_tool_calls"], out["temperature"]) == (
        "auto",
        True,
        1.0,
    )
    assert translate(message(), {"input": "x"})["output"] == []


@pytest.mark.parametrize(
    "malformed",
    [
        {"id": "msg_1"},
        {"content": [{"text": "no type"}]},
        {"content": [{"type": "text"}]},
        {"content": [{"type": "text", "text": 5}]},
        {"content": [{"type": "tool_use", "name": "f"}]},
        {"content": "text"},
    ],
)
def test_a_malformed_message_is_an_upstream_error(malformed: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        translate(malformed)
