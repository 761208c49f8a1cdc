"""A complete Anthropic message rewritten as an OpenAI Responses API ``response`` object.

    Anthropic message                        Responses response
    id msg_X                            ->   id resp_X
    consecutive text blocks             ->   one ``message`` item (id msg_X_<output index>), an
                                             ``output_text`` part per block
    tool_use {id, name, input}          ->   ``function_call`` item {id fc_<id>, call_id: id,
                                             name, arguments: input as JSON}
    stop_reason max_tokens,             ->   status incomplete, incomplete_details.reason
      model_context_window_exceeded          max_output_tokens (the last item incomplete too)
    stop_reason refusal                 ->   status incomplete, reason content_filter
    any other stop_reason               ->   status completed
    usage                               ->   usage {input_tokens (cache reads and writes
                                             included), input_tokens_details {cached_tokens:
                                             cache reads, cache_write_tokens}, output_tokens,
                                             total_tokens}

``thinking`` and ``redacted_thinking`` blocks are dropped, as for chat: no ``reasoning`` item
carries Anthropic's signed thinking, so a next turn goes without it (``responses_input`` leaves
``reasoning`` items out). ``model`` is the deployment's model, as for chat.
The request's settings (instructions, tools, tool_choice, temperature, ...) are echoed as
api.openai.com echoes them (``response_settings``), with ``store: false``: nothing is stored.
The stream (``stream_to_responses``) builds the same items with the same ids, so a streamed
and a complete answer look alike. An upstream message too malformed to translate is an
``UpstreamError`` (502), never a half-translated answer.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.errors import UpstreamError
from gateway.translate.vocabulary import token_count

__all__ = [
    "anthropic_message_to_response",
    "function_call_item",
    "message_item",
    "message_item_id",
    "output_text",
    "response_id",
    "response_object",
    "response_settings",
    "response_status",
    "responses_usage",
]

_encoder = msgspec.json.Encoder()
_INCOMPLETE = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


def response_settings(request: dict[str, Any]) -> dict[str, Any]:
    """The settings of Responses request ``request`` that its answer repeats, defaults filled."""
    reasoning = request.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, dict) else {}

    def given(name: str, default: Any) -> Any:
        value = request.get(name)
        return default if value is None else value

    return {
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default",
        "store": False,
        "temperature": given("temperature", 1.0),
        "text": given("text", {"format": {"type": "text"}}),
        "tool_choice": given("tool_choice", "auto"),
        "tools": given("tools", []),
        "top_p": given("top_p", 1.0),
        "truncation": given("truncation", "disabled"),
        "user": request.get("user"),
        "metadata": given("metadata", {}),
    }


def response_status(stop_reason: object) -> tuple[str, dict[str, str] | None]:
    """``(status, incomplete_details)`` for an Anthropic ``stop_reason``."""
    reason = _INCOMPLETE.get(stop_reason) if isinstance(stop_reason, str) else None
    return ("completed", None) if reason is None else ("incomplete", {"reason": reason})


def _count(value: object) -> int:
    return max(token_count(value), 0)


def responses_usage(anthropic: dict[str, Any]) -> dict[str, Any]:
    """A Responses ``usage`` object from an Anthropic one (absent or null counts are 0)."""
    cache_read = _count(anthropic.get("cache_read_input_tokens"))
    cache_write = _count(anthropic.get("cache_creation_input_tokens"))
    tokens_in = _count(anthropic.get("input_tokens")) + cache_read + cache_write
    tokens_out = _count(anthropic.get("output_tokens"))
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }


def response_id(anthropic_message_id: object) -> str:
    """``msg_01Xyz`` -> ``resp_01Xyz``: same suffix, so logs on both sides line up."""
    text = anthropic_message_id if isinstance(anthropic_message_id, str) else ""
    return "resp_" + text.removeprefix("msg_")


def message_item_id(anthropic_message_id: object, output_index: int) -> str:
    """The id of the message item at ``output_index`` of the answer to a message."""
    text = anthropic_message_id if isinstance(anthropic_message_id, str) else ""
    return f"msg_{text.removeprefix('msg_')}_{output_index}"


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    """A ``function_call`` item for the ``tool_use`` block with id ``call_id``."""
    return {
        "id": "fc_" + call_id.removeprefix("toolu_"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_object(
    *,
    id_: str,
    created_at: int,
    model: str,
    settings: dict[str, Any],
    status: str,
    incomplete_details: dict[str, str] | None,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``response`` object in api.openai.com's field order."""
    return {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
        "usage": usage,
        **settings,
    }


def anthropic_message_to_response(
    message: dict[str, Any],
    model: str,
    settings: dict[str, Any],
    *,
    created_at: int | None = None,
) -> dict[str, Any]:
    """The Responses ``response`` for Anthropic ``message``; ``settings`` from
    ``response_settings``, ``created_at`` defaults to now."""
    try:
        upstream_id = message.get("id")
        output: list[dict[str, Any]] = []
        text_item: dict[str, Any] | None = None  # the message item text blocks go to
        for block in message["content"]:
            kind = block["type"]
            if kind == "text":
                if not isinstance(block["text"], str):
                    raise TypeError("a text block's text is not a string")
                if text_item is None:
                    text_item = message_item(
                        message_item_id(upstream_id, len(output)), "completed", []
                    )
                    output.append(text_item)
                text_item["content"].append(output_text(block["text"]))
            elif kind == "tool_use":
                text_item = None
                arguments = _encoder.encode(block.get("input") or {}).decode()
                output.append(
                    function_call_item(block["id"], block["name"], arguments, "completed")
                )
        status, details = response_status(message.get("stop_reason"))
        if status == "incomplete" and output:
            output[-1]["status"] = "incomplete"
        usage = message.get("usage")
        return response_object(
            id_=response_id(upstream_id),
            created_at=int(time.time()) if created_at is None else created_at,
            model=model,
            settings=settings,
            status=status,
            incomplete_details=details,
            output=output,
            usage=responses_usage(usage if isinstance(usage, dict) else {}),
        )
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UpstreamError(f"upstream sent a malformed Anthropic message ({exc!r})") from exc
