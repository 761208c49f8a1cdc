"""The most output tokens a deployment's model can be asked for, and the clamp down to it.

Clients ask for what the model they think they talk to allows: Claude Code sends
``max_tokens: 32000``, and gpt-4o refuses anything above 16,384 with a 400. So every upstream
body Keyway builds for a deployment is clamped to the deployment's limit: its
``max_output_tokens`` in the config, else the model's entry in ``KNOWN_MAX_OUTPUT_TOKENS``.
A model in neither is not clamped: a wrong guess would cut answers short.

The table holds exact model names as the providers document them, dated snapshots only where
they are known to allow the same (``gpt-4o-2024-05-13`` allows 4,096, not gpt-4o's 16,384).
An Azure deployment's name is the operator's choice, so it matches only when it repeats a
model's name; ``max_output_tokens`` in the config covers the rest.

Thinking counts towards Anthropic's ``max_tokens`` and must stay below it, so a clamp lowers
``thinking.budget_tokens`` to fit; when the limit leaves no room for Anthropic's smallest
budget (1,024) the model answers without thinking rather than with a 400.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KNOWN_MAX_OUTPUT_TOKENS",
    "MIN_THINKING_BUDGET",
    "clamp_max_tokens",
    "known_max_output_tokens",
    "over_limit",
]

MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``thinking.budget_tokens``."""

_OPENAI_MODELS: dict[str, int] = {
    "gpt-3.5-turbo": 4096,
    "gpt-3.5-turbo-0125": 4096,
    "gpt-4-turbo": 4096,
    "gpt-4-turbo-2024-04-09": 4096,
    "gpt-4o": 16384,
    "gpt-4o-2024-05-13": 4096,
    "gpt-4o-2024-08-06": 16384,
    "gpt-4o-2024-11-20": 16384,
    "chatgpt-4o-latest": 16384,
    "gpt-4o-mini": 16384,
    "gpt-4o-mini-2024-07-18": 16384,
    "gpt-4.1": 32768,
    "gpt-4.1-2025-04-14": 32768,
    "gpt-4.1-mini": 32768,
    "gpt-4.1-mini-2025-04-14": 32768,
    "gpt-4.1-nano": 32768,
    "gpt-4.1-nano-2025-04-14": 32768,
    "o1": 100000,
    "o1-2024-12-17": 100000,
    "o3-mini": 100000,
    "o3-mini-2025-01-31": 100000,
    "o3": 100000,
    "o3-2025-04-16": 100000,
    "o4-mini": 100000,
    "o4-mini-2025-04-16": 100000,
    "gpt-5": 128000,
    "gpt-5-mini": 128000,
    "gpt-5-nano": 128000,
    "deepseek-chat": 8192,
}

_ANTHROPIC_MODELS: dict[str, int] = {
    "claude-3-haiku-20240307": 4096,
    "claude-3-5-haiku-20241022": 8192,
    "claude-3-5-haiku-latest": 8192,
    "claude-sonnet-4-20250514": 64000,
    "claude-opus-4-20250514": 32000,
    "claude-opus-4-1": 32000,
    "claude-opus-4-1-20250805": 32000,
    "claude-sonnet-4-5": 64000,
    "claude-sonnet-4-5-20250929": 64000,
    "claude-haiku-4-5": 64000,
    "claude-haiku-4-5-20251001": 64000,
}

KNOWN_MAX_OUTPUT_TOKENS: dict[str, int] = {**_OPENAI_MODELS, **_ANTHROPIC_MODELS}
"""Output token limits of common models, by the exact name the provider knows them by."""

_LIMITED_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Anthropic and OpenAI chat, OpenAI chat's newer name, the Responses API."""


def known_max_output_tokens(model: str) -> int | None:
    """The documented output token limit of ``model``; None when Keyway does not know it."""
    return KNOWN_MAX_OUTPUT_TOKENS.get(model)


def over_limit(limit: int | None, *requested: int | None) -> bool:
    """Whether one of the output limits a client asked for (read from the routed head, before
    the body is decoded) is above the deployment's ``limit``: the body must then be clamped."""
    return limit is not None and any(value is not None and value > limit for value in requested)


def clamp_max_tokens(doc: dict[str, Any], limit: int | None) -> bool:
    """Lower each output token limit of upstream body ``doc`` that is above ``limit`` to it.

    ``doc`` is any body Keyway sends upstream (OpenAI chat, Anthropic Messages, Responses);
    ``limit`` is the deployment's ``max_output_tokens`` (None: not clamped). Returns whether
    ``doc`` changed, so a caller holding the client's bytes re-encodes only when it must.
    """
    if limit is None:
        return False
    changed = False
    for name in _LIMITED_FIELDS:
        value = doc.get(name)
        if type(value) is int and value > limit:
            doc[name] = limit
            changed = True
    thinking, max_tokens = doc.get("thinking"), doc.get("max_tokens")
    # only a budget the clamp made too big: a client's own mistake is the upstream's to judge
    if changed and isinstance(thinking, dict) and type(max_tokens) is int:
        budget = thinking.get("budget_tokens")
        if type(budget) is int and budget >= max_tokens:
            if max_tokens - 1 >= MIN_THINKING_BUDGET:
                doc["thinking"] = {**thinking, "budget_tokens": max_tokens - 1}
            else:
                del doc["thinking"]
    return changed
