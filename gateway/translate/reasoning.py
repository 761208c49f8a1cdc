"""How hard a model thinks, in either dialect: Anthropic ``thinking`` and ``output_config.effort``
<-> OpenAI ``reasoning_effort``.

Anthropic -> OpenAI (``openai_reasoning_effort``)::

    output_config.effort low | medium | high    -> reasoning_effort low | medium | high
    output_config.effort max | xhigh            -> high
    thinking {type: enabled, budget_tokens: B}  -> low (B < 4,096), medium (B < 16,384), high
    thinking {type: adaptive | between_tools},  -> high (Anthropic's default effort)
      no effort
    thinking disabled or absent, no effort      -> nothing

Claude Code's budgets for think / think hard / ultrathink (4,000 / 10,000 / 31,999) land on
low / medium / high.

OpenAI -> Anthropic (``apply_reasoning_effort``)::

    reasoning_effort   Claude 3.7 to 4.5, and non-Claude names   Claude 4.6 and later
    none               nothing                                   nothing
    minimal            thinking, budget_tokens 1,024             thinking adaptive, effort low
    low                thinking, budget_tokens 2,048             thinking adaptive, effort low
    medium             thinking, budget_tokens 8,192             thinking adaptive, effort medium
    high, xhigh, max   thinking, budget_tokens 24,576            thinking adaptive, effort high

Each budget maps back to the effort it came from. Thinking counts towards the output limit in
both dialects (OpenAI's ``max_completion_tokens`` includes reasoning tokens), so a budget is cut
to fit below the client's limit, and a request without one gets the default limit (4,096) for
the answer on top of the budget. A limit below Anthropic's smallest budget (1,024) leaves no
room to think; so does a ``tool_choice`` that forces a tool, which Anthropic refuses together
with thinking: such requests go without it.

A model that cannot think gets neither field and answers as it would have, without thinking,
instead of a 400 ("reasoning_effort is not supported with this model") for a hint it cannot
take: Claude Code asks for thinking whatever model serves its alias. Which models think is read
from the name: on OpenAI's side o1, o3, o3-mini, o4-mini, gpt-5 (not gpt-5-chat) and gpt-oss;
on Anthropic's side Claude 3.7 and later, and names that are not Claude's (another vendor's
Anthropic-compatible endpoint), which get the original ``budget_tokens`` form.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import BadRequest
from gateway.translate.output_limits import MIN_THINKING_BUDGET

__all__ = [
    "apply_reasoning_effort",
    "openai_reasoning_effort",
    "takes_reasoning_effort",
    "thinks",
]

_BUDGET_OF = {"minimal": MIN_THINKING_BUDGET, "low": 2048, "medium": 8192, "high": 24576}
_BUDGET_OF.update(xhigh=_BUDGET_OF["high"], max=_BUDGET_OF["high"])
# only low, medium and high go out either way: the levels every model that takes one accepts
_ANTHROPIC_EFFORT_OF = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
_ANTHROPIC_EFFORT_OF.update(xhigh="high", max="high")
_OPENAI_EFFORT_OF = {"low": "low", "medium": "medium", "high": "high"}
_OPENAI_EFFORT_OF.update(xhigh="high", max="high")
_LOW_BELOW, _MEDIUM_BELOW = 4096, 16384
"""Thinking budgets below these are low, then medium effort; the rest is high."""

_OPENAI_REASONING_MODEL = re.compile(
    r"^(?:o1|o3|o3-mini|o4-mini|gpt-5(?:\.\d+)?(?:-mini|-nano)?)(?:-\d{4}-\d{2}-\d{2})?$"
    r"|gpt-oss"
)
_FIRST_ADAPTIVE = (4, 6)
"""Claude 4.6 takes ``thinking: {type: adaptive}`` with an effort; later ones take only that."""
_FIRST_THINKING = (3, 7)


def takes_reasoning_effort(model: str) -> bool:
    """Whether OpenAI-dialect ``model`` reasons and takes ``reasoning_effort``."""
    return _OPENAI_REASONING_MODEL.search(model) is not None


def _claude_version(model: str) -> tuple[int, int] | None:
    """``claude-3-5-haiku-latest`` -> (3, 5), ``claude-opus-4-20250514`` -> (4, 0)."""
    if not model.startswith("claude-"):
        return None
    numbers = [int(part) for part in model.split("-")[1:] if part.isdigit() and len(part) <= 2]
    if not numbers:
        return None
    return numbers[0], numbers[1] if len(numbers) > 1 else 0


def thinks(model: str) -> bool:
    """Whether Anthropic-dialect ``model`` takes ``thinking`` (names not Claude's are trusted)."""
    version = _claude_version(model)
    return version is None or version >= _FIRST_THINKING


def openai_reasoning_effort(body: dict[str, Any], model: str) -> str | None:
    """The ``reasoning_effort`` for Anthropic request ``body`` aimed at OpenAI-dialect ``model``."""
    thinking, config = body.get("thinking"), body.get("output_config")
    if thinking is not None and not isinstance(thinking, dict):
        raise BadRequest("`thinking` must be an object", param="thinking")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort is not None and effort not in _OPENAI_EFFORT_OF:
        raise BadRequest(
            f"unknown effort {effort!r}: use low, medium, high, xhigh or max",
            param="output_config.effort",
        )
    kind = thinking.get("type") if thinking else None
    if kind not in (None, "enabled", "disabled", "adaptive", "between_tools"):
        raise BadRequest(f"unknown thinking type {kind!r}", param="thinking.type")
    level: str | None
    if effort is not None:
        level = _OPENAI_EFFORT_OF[effort]
    elif kind in ("adaptive", "between_tools"):
        level = "high"
    elif kind == "enabled":
        budget = thinking.get("budget_tokens") if thinking else None
        if type(budget) is not int or budget < 1:
            raise BadRequest(
                "thinking needs a positive integer `budget_tokens`",
                param="thinking.budget_tokens",
            )
        level = "low" if budget < _LOW_BELOW else "medium" if budget < _MEDIUM_BELOW else "high"
    else:
        level = None
    return level if level is not None and takes_reasoning_effort(model) else None


def apply_reasoning_effort(
    out: dict[str, Any], effort: object, model: str, *, client_limit: bool
) -> None:
    """Set ``thinking`` (and ``output_config.effort``) on Anthropic body ``out`` for OpenAI's
    ``reasoning_effort`` ``effort``. ``client_limit``: ``out["max_tokens"]`` is the client's own
    limit; else it is the default limit, and the answer keeps it on top of the budget."""
    if effort is None or effort == "none":
        return
    if not isinstance(effort, str) or effort not in _BUDGET_OF:
        raise BadRequest(
            f"unknown reasoning_effort {effort!r}: "
            "use none, minimal, low, medium, high, xhigh or max",
            param="reasoning_effort",
        )
    choice = out.get("tool_choice")
    if not thinks(model) or (isinstance(choice, dict) and choice.get("type") in ("any", "tool")):
        return
    budget = _BUDGET_OF[effort]
    if not client_limit:
        out["max_tokens"] += budget
    budget = min(budget, out["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        return
    version = _claude_version(model)
    if version is not None and version >= _FIRST_ADAPTIVE:
        out["thinking"] = {"type": "adaptive"}
        out.setdefault("output_config", {})["effort"] = _ANTHROPIC_EFFORT_OF[effort]
    else:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
