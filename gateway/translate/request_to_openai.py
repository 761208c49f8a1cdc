"""An Anthropic Messages request rewritten as an OpenAI Chat Completions request.

    Anthropic                                 OpenAI
    ``system`` string | text blocks        -> first message, role system (string | text parts)
    ``system`` messages within ``messages`` -> system messages at the same place (Claude Code
                                              sends them; an empty one is left out)
    user content blocks                    -> user content parts (see ``content``)
    user ``tool_result`` blocks            -> one ``tool`` message each, placed before the rest of
                                              that user turn; images inside a result follow in
                                              a user message (tool messages hold text only)
    assistant text blocks                  -> ``content`` (a string when there is one block)
    assistant ``tool_use`` blocks          -> ``tool_calls`` (``input`` -> arguments JSON)
    tools[]{name,description,input_schema,strict}
                                           -> tools[].function{name,description,parameters,strict}
    tool_choice {type: auto/none/any/tool} -> auto/none/required/{function}
    tool_choice.disable_parallel_tool_use  -> parallel_tool_calls: false
    stop_sequences                         -> stop
    max_tokens                             -> max_completion_tokens (today's name; o-series and
                                              later models reject the older ``max_tokens``)
    temperature, top_p                     -> temperature, top_p
    metadata.user_id                       -> user; above OpenAI's 64 characters (Claude Code's is
                                              a JSON document) ``sha256:`` and the first 57 hex
                                              digits of its SHA-256: the same user, the same id
    output_config.format (or output_format) -> response_format (see ``structured_output``)
    thinking, output_config.effort         -> reasoning_effort, for models that reason (see
                                              ``reasoning``)
    stream                                 -> stream (and stream_options.include_usage: true
                                              when streaming, for the usage chunk)

Dropped, having no OpenAI counterpart and leaving the answer's form as it is: top_k, thinking
for a model that does not reason (and ``thinking.display``), assistant ``thinking`` /
``redacted_thinking`` blocks, service_tier, speed, inference_geo, context_management,
diagnostics, user_profile_id, workspace_id, other ``metadata`` keys, ``cache_control``
everywhere (top-level included), ``tool_result.is_error``, ``citations``, tool fields other than
the four above, and fields this module does not know. Refused with a 400, because dropping them would change the answer: server
tools (web search, code execution, ...), content blocks OpenAI cannot take, ``container``,
``mcp_servers`` (see ``refusals``) and output formats other than ``json_schema``. Malformed input
is a 400 too (``BadRequest``, raised here, never another exception): a ``tool_use`` input nested
too deeply to encode.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from gateway.errors import BadRequest
from gateway.translate.content import openai_part, texts
from gateway.translate.reasoning import openai_reasoning_effort
from gateway.translate.refusals import refuse_anthropic_only_fields
from gateway.translate.structured_output import openai_response_format

__all__ = ["MAX_OPENAI_USER", "anthropic_to_openai_chat", "openai_user"]

MAX_OPENAI_USER = 64
"""The longest ``user`` OpenAI accepts."""
_USER_HASH_PREFIX = "sha256:"

_encoder = msgspec.json.Encoder()
_TOOL_CHOICE = {"auto": "auto", "none": "none", "any": "required"}
_IGNORED_ASSISTANT_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def anthropic_to_openai_chat(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI chat request for Anthropic Messages request ``body``, aimed at ``model``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list", param="messages")
    refuse_anthropic_only_fields(body)

    converted: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("`system` must be a string or a list of text blocks", param="system")
    converted.extend(_system_messages(system, "system"))
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            converted.extend(_user_messages(message.get("content"), param))
        elif role == "assistant":
            converted.append(_assistant_message(message.get("content"), param))
        elif role == "system":
            converted.extend(_system_messages(message.get("content"), f"{param}.content"))
        else:
            raise BadRequest(f"unsupported message role {role!r}", param=f"{param}.role")

    out: dict[str, Any] = {"model": model, "messages": converted}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        out["max_completion_tokens"] = max_tokens
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        out.update(_tool_choice(body.get("tool_choice")))
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        out["stop"] = stop
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = openai_user(metadata["user_id"])
    response_format = openai_response_format(body)
    if response_format is not None:
        out["response_format"] = response_format
    effort = openai_reasoning_effort(body, model)
    if effort is not None:
        out["reasoning_effort"] = effort
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
        if body["stream"]:
            out["stream_options"] = {"include_usage": True}
    return out


def openai_user(user_id: str) -> str:
    """``user_id`` as OpenAI's ``user``: itself, or a stable digest when it is too long."""
    if len(user_id) <= MAX_OPENAI_USER:
        return user_id
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    return (_USER_HASH_PREFIX + digest)[:MAX_OPENAI_USER]


def _system_messages(content: Any, param: str) -> list[dict[str, Any]]:
    """The system message for a system prompt, as a string or as text parts; none if empty."""
    if isinstance(content, str):
        return [{"role": "system", "content": content}] if content else []
    parts = [{"type": "text", "text": text} for text in texts(content, param)]
    return [{"role": "system", "content": parts}] if parts else []


def _user_messages(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of blocks", param=f"{param}.content")
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        block_param = f"{param}.content[{j}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            results.append(_tool_message(block, block_param, parts))
        else:
            parts.append(openai_part(block, block_param))
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _tool_message(block: dict[str, Any], param: str, spill: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``tool`` message; images of the result are appended to ``spill``."""
    call_id, content = block.get("tool_use_id"), block.get("content")
    if not isinstance(call_id, str):
        raise BadRequest("a tool_result needs a tool_use_id", param=f"{param}.tool_use_id")
    if content is None or isinstance(content, str):
        return {"role": "tool", "tool_call_id": call_id, "content": content or ""}
    if not isinstance(content, list):
        raise BadRequest("tool_result content must be a string or a list", param=param)
    text_parts = []
    for k, item in enumerate(content):
        part = openai_part(item, f"{param}.content[{k}]")
        if part["type"] == "text":
            text_parts.append(part)
        else:
            spill.append(part)
    return {"role": "tool", "tool_call_id": call_id, "content": text_parts or ""}


def _assistant_message(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of blocks", param=f"{param}.content")
    text_list: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text_list.extend(texts([block], f"{param}.content[{j}]"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, f"{param}.content[{j}]"))
        elif kind not in _IGNORED_ASSISTANT_BLOCKS:
            raise BadRequest(
                f"content block {kind!r} is not supported by this model",
                param=f"{param}.content[{j}]",
            )
    message: dict[str, Any] = {"role": "assistant"}
    if len(text_list) == 1:
        message["content"] = text_list[0]
    elif text_list:
        message["content"] = [{"type": "text", "text": text} for text in text_list]
    else:
        message["content"] = None if calls else ""
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise BadRequest("a tool_use block needs an id and a name", param=param)
    try:
        arguments = _encoder.encode(tool_input if tool_input is not None else {}).decode()
    except RecursionError:
        raise BadRequest("a tool_use input is nested too deeply", param=f"{param}.input") from None
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("`tools` must be a list", param="tools")
    result = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise BadRequest(
                f"tool type {kind!r} is not supported by this model", param=f"tools[{i}]"
            )
        if not isinstance(tool.get("name"), str):
            raise BadRequest("a tool needs a name", param=f"tools[{i}].name")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = schema if isinstance(schema, dict) else {"type": "object"}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        result.append({"type": "function", "function": function})
    return result


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any]
    if kind in _TOOL_CHOICE:
        out = {"tool_choice": _TOOL_CHOICE[kind]}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise BadRequest("`tool_choice` is not a valid choice", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out
