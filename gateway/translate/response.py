"""A complete (non-streamed) answer rewritten from one dialect into the other.

    Anthropic message                          OpenAI chat completion
    id msg_X                              <->  id chatcmpl-X
    text blocks (joined)                  <->  choices[0].message.content
    tool_use blocks {id,name,input}       <->  message.tool_calls[{id,function{name,arguments}}]
    stop_reason                           <->  finish_reason (see ``vocabulary``)
    usage (with cache tokens)             <->  usage (with prompt_tokens_details.cached_tokens)

``model`` is the name the client asked for, not the upstream's. ``thinking`` blocks are dropped
(OpenAI has no field for them). An OpenAI ``refusal`` becomes a text block with stop_reason
``refusal``. Tool arguments that are not a JSON object become ``input: {}``: Anthropic clients
rely on ``input`` being an object. An upstream body too malformed to translate is an
``UpstreamError`` (502), never a half-translated answer.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.errors import UpstreamError
from gateway.translate.vocabulary import (
    anthropic_usage,
    chat_completion_id,
    finish_reason,
    message_id,
    openai_usage,
    stop_reason,
)

__all__ = ["anthropic_message_to_openai_chat", "openai_chat_to_anthropic_message"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def anthropic_message_to_openai_chat(
    resp: dict[str, Any], model: str, *, created: int | None = None
) -> dict[str, Any]:
    """The OpenAI chat completion for Anthropic message ``resp``; ``created`` defaults to now."""
    try:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in resp["content"]:
            kind = block["type"]
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                arguments = _encoder.encode(block.get("input") or {}).decode()
                calls.append(
                    {
                        "id": block["id"],
                        "type": "function",
                        "function": {"name": block["name"], "arguments": arguments},
                    }
                )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        usage = resp.get("usage")
        return {
            "id": chat_completion_id(resp.get("id")),
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(resp.get("stop_reason")),
                }
            ],
            "usage": openai_usage(usage if isinstance(usage, dict) else {}),
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"upstream sent a malformed Anthropic message ({exc!r})") from exc


def openai_chat_to_anthropic_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic message for OpenAI chat completion ``resp`` (its first choice)."""
    try:
        choice = resp["choices"][0]
        message = choice["message"]
        content: list[dict[str, Any]] = []
        text = message.get("content")
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            content.append({"type": "text", "text": refusal})
        for call in message.get("tool_calls") or ():
            function = call["function"]
            content.append(
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": function["name"],
                    "input": _tool_input(function.get("arguments")),
                }
            )
        reason = stop_reason(choice.get("finish_reason"))
        if refusal and reason == "end_turn":
            reason = "refusal"
        usage = resp.get("usage")
        return {
            "id": message_id(resp.get("id")),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": anthropic_usage(usage if isinstance(usage, dict) else {}),
        }
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"upstream sent a malformed chat completion ({exc!r})") from exc


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        decoded = _decoder.decode(arguments)
    except (msgspec.DecodeError, RecursionError):
        return {}
    return decoded if isinstance(decoded, dict) else {}
