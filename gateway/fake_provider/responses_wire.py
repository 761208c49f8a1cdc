"""The Responses API (``POST /v1/responses``) as the fake provider speaks it.

Shapes follow api.openai.com: a ``response`` object (``id`` "resp_...", ``status``, ``output``
items, ``usage`` with ``input_tokens_details`` / ``output_tokens_details``), and its stream of
typed events, each sent as ``event: <type>`` plus a ``data:`` object carrying the same
``type`` and a ``sequence_number`` counted from 0, with no ``[DONE]``::

    response.created, response.in_progress,
    response.output_item.added, response.content_part.added,
    response.output_text.delta ..., response.output_text.done,
    response.content_part.done, response.output_item.done,
    response.completed (the whole response, usage included)

An answer cut by ``max_output_tokens`` is ``status: "incomplete"`` and its stream ends with
``response.incomplete``. With function tools the fake calls one (a ``function_call`` item, its
arguments streamed as ``response.function_call_arguments.delta``), unless the input ends with
a ``function_call_output``: then it answers in text, which ends an agent loop. A
``text.format`` of type ``json_schema`` or ``json_object`` makes that text a JSON document.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.fake_provider.reply import Reply, ToolAnswer, estimate_tokens, new_id

__all__ = [
    "FunctionTool",
    "ResponsesRequest",
    "chosen_function",
    "input_tokens",
    "output_schema",
    "response_body",
    "response_events",
]

_encoder = msgspec.json.Encoder()


# -- requests ---------------------------------------------------------------------------------


class ResponsesRequest(msgspec.Struct):
    """The fields the fake reads or echoes; like api.openai.com, null means not given."""

    model: str = ""
    input: Any = None
    instructions: Any = None
    stream: bool | None = False
    max_output_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    text: dict[str, Any] | None = None


class FunctionTool(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


def _chars(value: Any) -> int:
    """The characters of every string in a request value (text, items, content parts)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    if isinstance(value, dict):
        return sum(_chars(item) for key, item in value.items() if key not in ("type", "role"))
    return 0


def input_tokens(request: ResponsesRequest) -> int:
    """The fake token count of ``input`` and ``instructions``."""
    return estimate_tokens(_chars(request.input) + _chars(request.instructions))


def chosen_function(request: ResponsesRequest) -> FunctionTool | None:
    """The function the fake model calls: the named ``tool_choice``, else the first tool.

    Raises ValueError (a 400) for a function whose ``parameters`` is not a JSON schema object.
    """
    functions: list[FunctionTool] = []
    for index, tool in enumerate(request.tools or ()):
        if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            continue
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError(f"Invalid type for 'tools[{index}].parameters': expected an object")
        functions.append(FunctionTool(tool["name"], parameters))
    if not functions or request.tool_choice == "none":
        return None
    items = request.input if isinstance(request.input, list) else []
    if items and isinstance(items[-1], dict) and items[-1].get("type") == "function_call_output":
        return None
    choice = request.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return next((f for f in functions if f.name == choice.get("name")), functions[0])
    return functions[0]


def output_schema(request: ResponsesRequest) -> dict[str, Any] | None:
    """The JSON schema the answer must satisfy (``json_object``: any object); None for text."""
    text_format = (request.text or {}).get("format")
    kind = text_format.get("type") if isinstance(text_format, dict) else None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema" or not isinstance(text_format, dict):
        return None
    schema = text_format.get("schema")
    return schema if isinstance(schema, dict) else {"type": "object"}


# -- responses --------------------------------------------------------------------------------


def _usage(input_count: int, output_count: int) -> dict[str, Any]:
    return {
        "input_tokens": input_count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_count,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_count + output_count,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _function_call(item_id: str, call_id: str, answer: ToolAnswer, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": answer.name,
        "arguments": answer.arguments_json if status == "completed" else "",
    }


def _truncated(answer: Reply | ToolAnswer) -> bool:
    return isinstance(answer, Reply) and answer.truncated


def _response(
    id_: str,
    created_at: int,
    model: str,
    request: ResponsesRequest,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``response`` object; the request's settings echoed as api.openai.com echoes them."""
    return {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True if request.store is None else request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": request.text or {"format": {"type": "text"}},
        "tool_choice": "auto" if request.tool_choice is None else request.tool_choice,
        "tools": request.tools or [],
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user,
        "metadata": request.metadata or {},
    }


def _final_output(answer: Reply | ToolAnswer, item_id: str, call_id: str) -> dict[str, Any]:
    if isinstance(answer, ToolAnswer):
        return _function_call(item_id, call_id, answer, "completed")
    return _message(item_id, "incomplete" if answer.truncated else "completed", answer.text)


def _item_ids(answer: Reply | ToolAnswer) -> tuple[str, str]:
    if isinstance(answer, ToolAnswer):
        return new_id("fc_"), new_id("call_")
    return new_id("msg_"), ""


def response_body(
    model: str, request: ResponsesRequest, prompt_tokens: int, answer: Reply | ToolAnswer
) -> bytes:
    """A finished ``response`` object: one message (or function call) and the usage."""
    item_id, call_id = _item_ids(answer)
    status = "incomplete" if _truncated(answer) else "completed"
    body = _response(
        new_id("resp_"),
        int(time.time()),
        model,
        request,
        status,
        [_final_output(answer, item_id, call_id)],
        _usage(prompt_tokens, answer.completion_tokens),
    )
    return _encoder.encode(body)


def response_events(
    model: str, request: ResponsesRequest, prompt_tokens: int, answer: Reply | ToolAnswer
) -> list[bytes]:
    """The SSE events of a streamed response, the terminal event last."""
    id_, created_at = new_id("resp_"), int(time.time())
    item_id, call_id = _item_ids(answer)
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        data = {"type": kind, "sequence_number": len(events), **fields}
        events.append(b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n")

    opening = _response(id_, created_at, model, request, "in_progress", [], None)
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    where = {"item_id": item_id, "output_index": 0}
    if isinstance(answer, ToolAnswer):
        emit(
            "response.output_item.added",
            output_index=0,
            item=_function_call(item_id, call_id, answer, "in_progress"),
        )
        for piece in answer.pieces:
            emit("response.function_call_arguments.delta", **where, delta=piece)
        emit("response.function_call_arguments.done", **where, arguments=answer.arguments_json)
    else:
        emit(
            "response.output_item.added",
            output_index=0,
            item=_message(item_id, "in_progress", None),
        )
        text_at = {**where, "content_index": 0}
        emit("response.content_part.added", **text_at, part=_text_part(""))
        for piece in answer.pieces:
            emit("response.output_text.delta", **text_at, delta=piece, logprobs=[])
        emit("response.output_text.done", **text_at, text=answer.text, logprobs=[])
        emit("response.content_part.done", **text_at, part=_text_part(answer.text))
    final_item = _final_output(answer, item_id, call_id)
    emit("response.output_item.done", output_index=0, item=final_item)
    status = "incomplete" if _truncated(answer) else "completed"
    usage = _usage(prompt_tokens, answer.completion_tokens)
    final = _response(id_, created_at, model, request, status, [final_item], usage)
    emit(f"response.{status}", response=final)
    return events
