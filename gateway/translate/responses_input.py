"""The ``input`` of a Responses API request (and its ``instructions``) as Anthropic messages.

    Responses                                   Anthropic
    instructions, then system / developer   ->  system texts, in order (the request module makes
      messages (anywhere in ``input``)          them the top-level ``system``)
    input (a string)                        ->  one user message
    message items, user / assistant         ->  messages; consecutive items of one role share one
      (``type`` "message", or none)             message (Anthropic merges such turns the same way)
      input_text, output_text, refusal      ->  text blocks
      input_image {image_url}               ->  image block (URL, or base64 from a data URL)
      input_file {file_data | file_url}     ->  document block (base64, or URL), filename -> title
    function_call {call_id, name, arguments} -> assistant ``tool_use`` {id, name, input}
    function_call_output {call_id, output}  ->  user ``tool_result`` {tool_use_id, content}
    reasoning                               ->  nothing: Anthropic drops earlier turns' thinking
                                                from the context itself
    item_reference                          ->  a 400: nothing is stored to refer to

Dropped: item ids and statuses, ``input_image.detail``, empty texts. A 400 (``BadRequest``, or
``unsupported_parameter`` for what Anthropic cannot take) names the item or part that is wrong:
other item types (built-in tool calls and their outputs), other roles and part types, uploaded
files (``file_id``), arguments that are not a JSON object or are nested too deeply.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import BadRequest
from gateway.translate.content import parse_data_url
from gateway.translate.refusals import unsupported

__all__ = ["anthropic_conversation"]

_decoder = msgspec.json.Decoder()


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def anthropic_conversation(instructions: Any, items: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """``(system texts, messages)`` for a Responses request's ``instructions`` and ``input``."""
    system: list[str] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("`instructions` must be a string", param="instructions")
        if instructions:
            system.append(instructions)
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    elif not isinstance(items, list):
        raise BadRequest("`input` must be a string or a list of items", param="input")
    turns: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest("an input item must be an object", param=param)
        kind = item.get("type") or "message"  # the short form of a message has no type
        if kind == "message":
            role = item.get("role")
            content = item.get("content")
            if role in ("system", "developer"):
                system.extend(_texts(content, f"{param}.content", ("input_text",)))
            elif role == "user":
                _append(turns, "user", _user_content(content, f"{param}.content"))
            elif role == "assistant":
                _append(turns, "assistant", _assistant_content(content, f"{param}.content"))
            else:
                raise BadRequest(f"unsupported message role {role!r}", param=f"{param}.role")
        elif kind == "function_call":
            _append(turns, "assistant", [_tool_use(item, param)])
        elif kind == "function_call_output":
            _append(turns, "user", [_tool_result(item, param)])
        elif kind == "item_reference":
            raise unsupported(
                param,
                "this model keeps no stored items: send the item itself "
                "(with `store: false` SDKs send earlier output whole)",
            )
        elif kind != "reasoning":
            raise unsupported(f"{param}.type", f"input items of type {kind!r} are not supported")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add ``content`` to the conversation, merging it into the last message of the same role."""
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": content})
        return
    last = turns[-1]
    if isinstance(last["content"], str):
        last["content"] = [_text(last["content"])] if last["content"] else []
    if isinstance(content, str):
        content = [_text(content)] if content else []
    last["content"].extend(content)


def _texts(content: Any, param: str, kinds: tuple[str, ...]) -> list[str]:
    """The texts of a content that may hold only text: a string, or parts of ``kinds``."""
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of parts", param=param)
    result = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("refusal" if kind == "refusal" else "text") if kind in kinds else None
        if not isinstance(text, str):
            expected = " or ".join(kinds)
            raise BadRequest(f"only {expected} parts are allowed here", param=f"{param}[{j}]")
        if text:
            result.append(text)
    return result


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of parts", param=param)
    return [_user_block(part, f"{param}[{j}]") for j, part in enumerate(content)]


def _assistant_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    kinds = ("output_text", "input_text", "refusal")
    return [_text(text) for text in _texts(content, param, kinds)]


def _user_block(part: Any, param: str) -> dict[str, Any]:
    """The Anthropic block for one part of a user message or of a function call's output."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_text":
        if not isinstance(part.get("text"), str):
            raise BadRequest("an input_text part needs a string `text`", param=f"{param}.text")
        return _text(part["text"])
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url:
            return {"type": "image", "source": _source(url, f"{param}.image_url")}
        if part.get("file_id") is not None:
            raise unsupported(f"{param}.file_id", "uploaded files cannot be sent to this model")
        raise BadRequest("an input_image part needs an image_url", param=f"{param}.image_url")
    if kind == "input_file":
        return _document(part, param)
    raise unsupported(param, f"content part type {kind!r} is not supported by this model")


def _source(url: str, param: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    media_type, data = parse_data_url(url, param)
    return {"type": "base64", "media_type": media_type, "data": data}


def _document(part: dict[str, Any], param: str) -> dict[str, Any]:
    file_data, file_url = part.get("file_data"), part.get("file_url")
    if isinstance(file_data, str) and file_data:
        media_type, data = parse_data_url(
            file_data if file_data.startswith("data:") else "", f"{param}.file_data"
        )
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif isinstance(file_url, str) and file_url:
        source = {"type": "url", "url": file_url}
    elif part.get("file_id") is not None:
        raise unsupported(f"{param}.file_id", "uploaded files cannot be sent to this model")
    else:
        raise BadRequest("an input_file part needs file_data or file_url", param=param)
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(part.get("filename"), str) and part["filename"]:
        block["title"] = part["filename"]
    return block


def _tool_use(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("a function_call needs a call_id", param=f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise BadRequest("a function_call needs a name", param=f"{param}.name")
    tool_input: Any = None
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        tool_input = {}
    elif isinstance(arguments, str):
        try:
            tool_input = _decoder.decode(arguments)
        except msgspec.DecodeError:
            tool_input = None
        except RecursionError:
            raise BadRequest(
                "function call arguments are nested too deeply", param=f"{param}.arguments"
            ) from None
    if not isinstance(tool_input, dict):
        raise BadRequest(
            "function call arguments must be a JSON object", param=f"{param}.arguments"
        )
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _tool_result(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("a function_call_output needs a call_id", param=f"{param}.call_id")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(output, str):
        result["content"] = output
    elif isinstance(output, list):
        result["content"] = [
            _user_block(part, f"{param}.output[{j}]") for j, part in enumerate(output)
        ]
    else:
        raise BadRequest("`output` must be a string or a list of parts", param=f"{param}.output")
    return result
