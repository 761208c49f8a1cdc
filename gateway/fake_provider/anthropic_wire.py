"""The Anthropic Messages wire format as the fake provider speaks it: requests read, bodies built.

A streamed message follows api.anthropic.com's event order exactly: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` (``text_delta`` or
``input_json_delta``), ``content_block_stop``, ``message_delta``, ``message_stop``; each as
``event: <type>\\ndata: <json>\\n\\n``. An ``output_config.format`` of type ``json_schema`` (or
the beta spelling ``output_format``) makes the text a JSON document.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.fake_provider.reply import Reply, ToolAnswer, estimate_tokens, new_id

__all__ = [
    "MessagesRequest",
    "chosen_tool",
    "message_body",
    "message_events",
    "models_body",
    "output_schema",
    "prompt_tokens",
]

_encoder = msgspec.json.Encoder()


# -- requests ---------------------------------------------------------------------------------


class Block(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    content: str | list[Block] | None = None


class InputMessage(msgspec.Struct):
    role: str = "user"
    content: str | list[Block] = ""


class ToolDefinition(msgspec.Struct):
    name: str = ""
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(msgspec.Struct):
    type: str = "auto"
    name: str | None = None


class MessagesRequest(msgspec.Struct):
    model: str = ""
    messages: list[InputMessage] = msgspec.field(default_factory=list)
    system: str | list[Block] | None = None
    max_tokens: int | None = None
    stream: bool = False
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    output_config: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None
    """The structured-outputs beta's spelling of ``output_config.format``."""


def _chars(content: str | list[Block] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    return sum(len(block.text or "") + _chars(block.content) for block in content)


def prompt_tokens(request: MessagesRequest) -> int:
    """The fake token count of the system prompt and every message's text and tool results."""
    return estimate_tokens(
        _chars(request.system) + sum(_chars(message.content) for message in request.messages)
    )


def chosen_tool(request: MessagesRequest) -> ToolDefinition | None:
    """The tool the fake model uses: the named ``tool_choice``, else the first tool.

    No call when there are no tools, when ``tool_choice`` is "none", or when the last message
    carries a ``tool_result`` (the model then answers in text, which ends an agent loop).
    """
    tools = [tool for tool in request.tools or () if tool.name]
    choice = request.tool_choice
    if not tools or (choice is not None and choice.type == "none"):
        return None
    last = request.messages[-1].content if request.messages else ""
    if isinstance(last, list) and any(block.type == "tool_result" for block in last):
        return None
    if choice is not None and choice.type == "tool" and choice.name:
        return next((t for t in tools if t.name == choice.name), tools[0])
    return tools[0]


def output_schema(request: MessagesRequest) -> dict[str, Any] | None:
    """The JSON schema the answer must satisfy; None for text."""
    output_format = (request.output_config or {}).get("format") or request.output_format
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return None
    schema = output_format.get("schema")
    return schema if isinstance(schema, dict) else {"type": "object"}


# -- responses --------------------------------------------------------------------------------


class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class TextBlock(msgspec.Struct, kw_only=True):
    type: str = "text"
    text: str


class ToolUseBlock(msgspec.Struct, kw_only=True):
    type: str = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class Message(msgspec.Struct, kw_only=True):
    id: str
    type: str = "message"
    role: str = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: str | None
    stop_sequence: None = None
    usage: Usage


def _stop_reason(answer: Reply | ToolAnswer) -> str:
    if isinstance(answer, ToolAnswer):
        return "tool_use"
    return "max_tokens" if answer.truncated else "end_turn"


def message_body(id_: str, model: str, input_tokens: int, answer: Reply | ToolAnswer) -> bytes:
    """A ``message`` object answering in text or with one ``tool_use`` block."""
    block: TextBlock | ToolUseBlock
    if isinstance(answer, ToolAnswer):
        block = ToolUseBlock(id=new_id("toolu_"), name=answer.name, input=answer.arguments)
    else:
        block = TextBlock(text=answer.text)
    usage = Usage(input_tokens=input_tokens, output_tokens=answer.completion_tokens)
    return _encoder.encode(
        Message(id=id_, model=model, content=[block], stop_reason=_stop_reason(answer), usage=usage)
    )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


def message_events(
    id_: str, model: str, input_tokens: int, answer: Reply | ToolAnswer
) -> list[bytes]:
    """The SSE events of a streamed message, ``message_stop`` last."""
    opening = Message(
        id=id_,
        model=model,
        content=[],
        stop_reason=None,
        usage=Usage(input_tokens=input_tokens, output_tokens=1),
    )
    block: dict[str, Any]
    if isinstance(answer, ToolAnswer):
        block = {
            "type": "tool_use",
            "id": new_id("toolu_"),
            "name": answer.name,
            "input": {},
        }
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in answer.pieces]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
    events = [
        _event("message_start", {"type": "message_start", "message": opening}),
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        _event("ping", {"type": "ping"}),
    ]
    events.extend(
        _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        for delta in deltas
    )
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                "usage": {"output_tokens": answer.completion_tokens},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def models_body(models: tuple[str, ...]) -> bytes:
    """The Anthropic ``GET /v1/models`` page."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"}
        for m in models
    ]
    first, last = (models[0], models[-1]) if models else (None, None)
    return _encoder.encode({"data": data, "has_more": False, "first_id": first, "last_id": last})
