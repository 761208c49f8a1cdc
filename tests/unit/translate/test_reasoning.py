"""Thinking and reasoning effort: the mapping both ways, and which models get it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.reasoning import (
    apply_reasoning_effort,
    openai_reasoning_effort,
    takes_reasoning_effort,
    thinks,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, "low"),  # Claude Code: think
        ({"thinking": {"type": "enabled", "budget_tokens": 10000}}, "medium"),  # think hard
        ({"thinking": {"type": "enabled", "budget_tokens": 31999}}, "high"),  # ultrathink
        ({"thinking": {"type": "adaptive"}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "between_tools"}}, "high"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "disabled"}}, None),
        ({}, None),
    ],
)
def test_anthropic_thinking_as_openai_reasoning_effort(
    body: dict[str, Any], expected: str | None
) -> None:
    assert openai_reasoning_effort(body, "o3") == expected


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_each_budget_maps_back_to_the_effort_it_came_from(effort: str) -> None:
    out: dict[str, Any] = {"max_tokens": 4096}
    apply_reasoning_effort(out, effort, "claude-sonnet-4-5", client_limit=False)
    assert openai_reasoning_effort(out, "o4-mini") == effort


@pytest.mark.parametrize(
    ("model", "reasons"),
    [
        ("o1", True),
        ("o3", True),
        ("o3-mini-2025-01-31", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5-mini-2025-08-07", True),
        ("gpt-5.1", True),
        ("openai/gpt-oss-120b", True),
        ("o1-mini", False),
        ("gpt-5-chat-latest", False),
        ("gpt-4o", False),
        ("gpt-4.1", False),
        ("deepseek-chat", False),
        ("my-azure-deployment", False),
    ],
)
def test_which_openai_models_take_reasoning_effort(model: str, reasons: bool) -> None:
    assert takes_reasoning_effort(model) is reasons


@pytest.mark.parametrize(
    ("model", "thinking"),
    [
        ("claude-3-haiku-20240307", False),
        ("claude-3-5-haiku-latest", False),
        ("claude-3-5-sonnet-20241022", False),
        ("claude-3-7-sonnet-20250219", True),
        ("claude-sonnet-4-20250514", True),
        ("claude-opus-4-1", True),
        ("claude-haiku-4-5", True),
        ("kimi-k2", True),  # another vendor's Anthropic endpoint: trusted to say so itself
    ],
)
def test_which_anthropic_models_think(model: str, thinking: bool) -> None:
    assert thinks(model) is thinking


BUDGET_FORM = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
ADAPTIVE_FORM = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-opus-4-1", BUDGET_FORM),
        ("kimi-k2", BUDGET_FORM),
        ("claude-opus-4-6", ADAPTIVE_FORM),
        ("claude-opus-5", ADAPTIVE_FORM),
    ],
)
def test_claude_4_6_and_later_think_adaptively(model: str, expected: dict[str, Any]) -> None:
    out: dict[str, Any] = {"max_tokens": 8000}
    apply_reasoning_effort(out, "low", model, client_limit=True)
    assert out == {"max_tokens": 8000, **expected}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"thinking": "on"}, "thinking"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ],
)
def test_malformed_thinking_is_a_bad_request(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        openai_reasoning_effort(body, "o3")
    assert caught.value.param == param


def test_an_unknown_reasoning_effort_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as caught:
        apply_reasoning_effort({"max_tokens": 10}, "extreme", "claude", client_limit=True)
    assert caught.value.param == "reasoning_effort"
