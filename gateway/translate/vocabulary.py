"""The scalar words both dialects have for the same thing: stop reasons, ids and token usage.

Stop reasons::

    Anthropic stop_reason            OpenAI finish_reason
    end_turn, stop_sequence,    ->   stop
    pause_turn
    max_tokens,                 ->   length
    model_context_window_exceeded
    tool_use                    <->  tool_calls (and legacy function_call ->)
    refusal                     <->  content_filter
    end_turn                    <-   stop (OpenAI does not say whether a stop sequence matched)

Usage: OpenAI's ``prompt_tokens`` counts every input token, cached or not; Anthropic splits them
into ``input_tokens`` (uncached), ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
So ``prompt_tokens = input + cache_read + cache_creation`` and ``cached_tokens = cache_read``.
OpenAI caches for free and reports no cache writes, so the way back sets ``cache_creation`` to 0.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "anthropic_usage",
    "chat_completion_id",
    "finish_reason",
    "message_id",
    "openai_usage",
    "prompt_and_output_tokens",
    "stop_reason",
]

_FINISH_REASON_OF = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STOP_REASON_OF = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(anthropic_stop_reason: object) -> str:
    """The OpenAI ``finish_reason`` for an Anthropic ``stop_reason`` (``stop`` if unknown)."""
    return (
        _FINISH_REASON_OF.get(anthropic_stop_reason, "stop")
        if isinstance(anthropic_stop_reason, str)
        else "stop"
    )


def stop_reason(openai_finish_reason: object) -> str:
    """The Anthropic ``stop_reason`` for an OpenAI ``finish_reason`` (``end_turn`` if unknown)."""
    if isinstance(openai_finish_reason, str):
        return _STOP_REASON_OF.get(openai_finish_reason, "end_turn")
    return "end_turn"


def chat_completion_id(anthropic_message_id: object) -> str:
    """``msg_01Xyz`` -> ``chatcmpl-01Xyz``: same suffix, so logs on both sides line up."""
    text = anthropic_message_id if isinstance(anthropic_message_id, str) else ""
    return "chatcmpl-" + text.removeprefix("msg_")


def message_id(openai_completion_id: object) -> str:
    """``chatcmpl-AbC`` -> ``msg_AbC``."""
    text = openai_completion_id if isinstance(openai_completion_id, str) else ""
    return "msg_" + text.removeprefix("chatcmpl-")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(anthropic: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``usage`` object from an Anthropic one (absent or null counts are 0)."""
    cache_read = _count(anthropic.get("cache_read_input_tokens"))
    prompt = (
        _count(anthropic.get("input_tokens"))
        + cache_read
        + _count(anthropic.get("cache_creation_input_tokens"))
    )
    completion = _count(anthropic.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def anthropic_usage(openai: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``usage`` object from an OpenAI one (absent or null counts are 0)."""
    details = openai.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(openai.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(openai.get("completion_tokens")),
    }


def prompt_and_output_tokens(anthropic: dict[str, Any]) -> tuple[int, int]:
    """``(every input token, output tokens)`` of an Anthropic usage object, for accounting."""
    usage = openai_usage(anthropic)
    return usage["prompt_tokens"], usage["completion_tokens"]
