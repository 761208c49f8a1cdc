"""Output token limits: known models' limits, and the clamp every upstream body goes through."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.translate.output_limits import clamp_max_tokens, known_max_output_tokens, over_limit


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("gpt-4o", 16384),
        ("gpt-4o-mini", 16384),
        ("gpt-4o-2024-05-13", 4096),
        ("gpt-4.1-mini", 32768),
        ("o3", 100000),
        ("o4-mini", 100000),
        ("gpt-3.5-turbo", 4096),
        ("deepseek-chat", 8192),
        ("claude-3-5-haiku-latest", 8192),
        ("my-azure-deployment", None),
        ("gpt-4o-2099-01-01", None),  # an unknown snapshot is not guessed
    ],
)
def test_known_limits(model: str, limit: int | None) -> None:
    assert known_max_output_tokens(model) == limit


@pytest.mark.parametrize(
    ("doc", "limit", "expected"),
    [
        ({"max_completion_tokens": 32000}, 16384, {"max_completion_tokens": 16384}),
        ({"max_tokens": 32000}, 16384, {"max_tokens": 16384}),
        ({"max_output_tokens": 32000}, 16384, {"max_output_tokens": 16384}),
        (
            {"max_tokens": 40000, "max_completion_tokens": 100},
            16384,
            {"max_tokens": 16384, "max_completion_tokens": 100},
        ),
        ({"max_tokens": 100}, 16384, {"max_tokens": 100}),
        ({"max_tokens": 32000}, None, {"max_tokens": 32000}),
        ({"max_tokens": True}, 0, {"max_tokens": True}),
    ],
)
def test_clamp(doc: dict[str, Any], limit: int | None, expected: dict[str, Any]) -> None:
    before = dict(doc)
    assert clamp_max_tokens(doc, limit) is (before != expected)
    assert doc == expected


def test_a_thinking_budget_the_clamp_made_too_big_shrinks_below_the_limit() -> None:
    doc = {"max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999}}
    clamp_max_tokens(doc, 8192)
    assert doc == {"max_tokens": 8192, "thinking": {"type": "enabled", "budget_tokens": 8191}}


def test_no_room_for_the_smallest_budget_means_no_thinking() -> None:
    doc = {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    clamp_max_tokens(doc, 1000)
    assert doc == {"max_tokens": 1000}


def test_a_clients_own_budget_mistake_is_left_to_the_upstream() -> None:
    doc = {"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 4000}}
    clamp_max_tokens(doc, 8192)
    assert doc == {"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 4000}}


def test_over_limit_reads_the_routed_head() -> None:
    assert over_limit(16384, None, 32000) is True
    assert over_limit(16384, 100, None) is False
    assert over_limit(None, 32000) is False
