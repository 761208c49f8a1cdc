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

Counts come from the upstream, so they are checked before anyone is charged for them: a count
that is not a JSON integer (a float, a bool, a string), negative or above ``MAX_TOKEN_COUNT``
makes the usage unknown (-1, -1), and so does a missing input count. Settlement then keeps the
estimate charged. The usage objects sent on to clients show such a count as 0.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_TOKEN_COUNT",
    "anthropic_usage",
    "anthropic_usage_counts",
    "chat_completion_id",
    "finish_reason",
    "message_id",
    "openai_usage",
    "openai_usage_counts",
    "stop_reason",
    "token_count",
    "usage_counts",
]

MAX_TOKEN_COUNT = 2**53
"""Above any real count and the last integer a double (Lua's number) holds exactly."""
_UNKNOWN = (-1, -1)

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


def token_count(value: object) -> int:
    """An upstream's token count, or -1 unless it is an integer in 0..MAX_TOKEN_COUNT."""
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return -1


def usage_counts(
    input_tokens: object, output_tokens: object, *more_input: object
) -> tuple[int, int]:
    """``(input + more_input, output)`` to charge; (-1, -1) when a count is unusable.

    The input count must be there; a missing (None) output or extra input count is 0.
    """
    tokens_in = token_count(input_tokens)
    tokens_out = 0 if output_tokens is None else token_count(output_tokens)
    if tokens_in < 0 or tokens_out < 0:
        return _UNKNOWN
    for value in more_input:
        if value is not None:
            extra = token_count(value)
            if extra < 0:
                return _UNKNOWN
            tokens_in += extra
    return min(tokens_in, MAX_TOKEN_COUNT), tokens_out


def openai_usage_counts(usage: object) -> tuple[int, int]:
    """``(prompt, completion)`` tokens to charge for an OpenAI ``usage`` object."""
    if not isinstance(usage, dict):
        return _UNKNOWN
    return usage_counts(usage.get("prompt_tokens"), usage.get("completion_tokens"))


def anthropic_usage_counts(usage: object) -> tuple[int, int]:
    """``(input incl. cache reads and writes, output)`` to charge for an Anthropic ``usage``."""
    if not isinstance(usage, dict):
        return _UNKNOWN
    return usage_counts(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        usage.get("cache_creation_input_tokens"),
        usage.get("cache_read_input_tokens"),
    )


def _count(value: object) -> int:
    return max(token_count(value), 0)


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
