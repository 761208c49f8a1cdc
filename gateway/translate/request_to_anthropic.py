"""An OpenAI Chat Completions request rewritten as an Anthropic Messages request.

    OpenAI                                    Anthropic
    system / developer messages (anywhere) -> top-level ``system``: a string when there is exactly
                                              one and it is a string, else a list of text blocks
    user content parts                     -> content blocks (see ``content``)
    assistant ``tool_calls``               -> ``tool_use`` blocks (arguments JSON -> ``input``)
    ``tool`` messages                      -> ``tool_result`` blocks; consecutive ones share one
                                              user message, as Anthropic requires
    tools[].function{name,description,parameters,strict}
                                           -> tools[]{name,description,input_schema,strict}
    tool_choice auto/none/required/{function}     -> {type: auto/none/any/tool}
    parallel_tool_calls: false             -> tool_choice.disable_parallel_tool_use: true
    stop (str | list)                      -> stop_sequences
    max_completion_tokens | max_tokens     -> max_tokens (4096 when neither: Anthropic needs one)
    temperature                            -> temperature, clamped to Anthropic's 0..1
    top_p, stream                          -> top_p, stream
    user (else safety_identifier)          -> metadata.user_id
    response_format json_schema            -> output_config.format (see ``structured_output``)
    reasoning_effort                       -> thinking (and output_config.effort), for models
                                              that think (see ``reasoning``)

Dropped, having no Anthropic counterpart and leaving the answer's form as it is:
frequency_penalty, presence_penalty, seed (sampling hints), ``response_format`` text (the
default), prediction, verbosity, stream_options (Anthropic always streams usage), service_tier,
store, metadata, prompt_cache_key, prompt_cache_options, prompt_cache_retention,
reasoning_effort for a model that cannot think, message ``name`` fields, ``image_url.detail``,
``json_schema.name`` and ``description``, and fields this module does not know. Refused with a
400, because ignoring them would change the answer: ``n`` > 1, the legacy
``functions``/``function_call``, non-function tools, content parts Anthropic cannot take,
``response_format`` json_object, and logprobs, logit_bias, audio output, web_search_options and
moderation (see ``refusals``). Malformed input is a 400 too
(``BadRequest``, raised here), never another exception: tool call arguments that are not a
JSON object, or are nested too deeply to decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import BadRequest
from gateway.translate.content import anthropic_block, texts
from gateway.translate.reasoning import apply_reasoning_effort
from gateway.translate.refusals import refuse_openai_only_fields
from gateway.translate.structured_output import anthropic_output_format

__all__ = ["DEFAULT_MAX_TOKENS", "openai_chat_to_anthropic"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent to Anthropic when the OpenAI request set no limit."""

_decoder = msgspec.json.Decoder()
_TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}


def openai_chat_to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic Messages request for OpenAI chat request ``body``, aimed at ``model``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list", param="messages")
    if body.get("n") not in (None, 1):
        raise BadRequest("this model can only return one choice (n=1)", param="n")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise BadRequest("use `tools` and `tool_choice` instead of the legacy `functions`")
    refuse_openai_only_fields(body)

    system, turns = _conversation(messages)
    limit = _max_tokens(body)
    out: dict[str, Any] = {"model": model, "max_tokens": limit or DEFAULT_MAX_TOKENS}
    if system is not None:
        out["system"] = system
    out["messages"] = turns

    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(max(temperature, 0), 1)
    if isinstance(body.get("top_p"), int | float):
        out["top_p"] = body["top_p"]
    for name in ("user", "safety_identifier"):
        if isinstance(body.get(name), str) and body[name]:
            out["metadata"] = {"user_id": body[name]}
            break
    output_format = anthropic_output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    apply_reasoning_effort(out, body.get("reasoning_effort"), model, client_limit=bool(limit))
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
    return out


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"`{name}` must be a positive integer", param=name)
        return value
    return None


def _conversation(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[Any]]:
    system: list[str] = []
    system_is_one_string = True
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the user turn collecting tool results
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest("a message must be an object", param=param)
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.extend(texts(content, f"{param}.content"))
            system_is_one_string = not system[:-1] and isinstance(content, str)
            continue
        if role == "tool":
            if results is None:
                results = []
                turns.append({"role": "user", "content": results})
            results.append(_tool_result(message, param))
            continue
        results = None
        if role == "user":
            turns.append({"role": "user", "content": _user_content(content, param)})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": _assistant_content(message, param)})
        else:
            raise BadRequest(f"unsupported message role {role!r}", param=f"{param}.role")
    if not system:
        return None, turns
    if system_is_one_string and len(system) == 1:
        return system[0], turns
    return [{"type": "text", "text": text} for text in system], turns


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("user content must be a string or a list of parts", param=param)
    return [anthropic_block(part, f"{param}.content[{j}]") for j, part in enumerate(content)]


def _assistant_content(message: dict[str, Any], param: str) -> str | list[dict[str, Any]]:
    content, calls = message.get("content"), message.get("tool_calls")
    if not calls and isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    if isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if kind in ("text", "refusal") else None
            if not isinstance(text, str):
                raise BadRequest("assistant parts must be text", param=f"{param}.content[{j}]")
            if text:
                blocks.append({"type": "text", "text": text})
    elif isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    elif content is not None and not isinstance(content, str):
        raise BadRequest("assistant content must be a string or a list", param=f"{param}.content")
    if calls is not None and not isinstance(calls, list):
        raise BadRequest("`tool_calls` must be a list", param=f"{param}.tool_calls")
    for j, call in enumerate(calls or ()):
        blocks.append(_tool_use(call, f"{param}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(call.get("id"), str):
        raise BadRequest("a tool call needs an id and a function", param=param)
    name, arguments = function.get("name"), function.get("arguments")
    if not isinstance(name, str):
        raise BadRequest("a tool call needs a function name", param=f"{param}.function.name")
    tool_input: Any = arguments
    if isinstance(arguments, str):
        try:
            tool_input = _decoder.decode(arguments) if arguments.strip() else {}
        except msgspec.DecodeError:
            tool_input = None
        except RecursionError:
            raise BadRequest(
                "tool call arguments are nested too deeply", param=f"{param}.function.arguments"
            ) from None
    elif arguments is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise BadRequest(
            "tool call arguments must be a JSON object", param=f"{param}.function.arguments"
        )
    return {"type": "tool_use", "id": call["id"], "name": name, "input": tool_input}


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, content = message.get("tool_call_id"), message.get("content")
    if not isinstance(call_id, str):
        raise BadRequest("a tool message needs a tool_call_id", param=f"{param}.tool_call_id")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, list):
        result["content"] = [
            {"type": "text", "text": text} for text in texts(content, f"{param}.content")
        ]
    else:
        result["content"] = "".join(texts(content, f"{param}.content"))
    return result


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("`tools` must be a list", param="tools")
    result = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise BadRequest("only function tools are supported by this model", param=f"tools[{i}]")
        if not isinstance(function.get("name"), str):
            raise BadRequest("a function needs a name", param=f"tools[{i}].function.name")
        result.append(function_to_anthropic_tool(function))
    return result


def function_to_anthropic_tool(function: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function definition (`name`, `description`, `parameters`, `strict`; chat nests
    it under `function`, the Responses API does not) as an Anthropic tool."""
    converted: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        converted["description"] = function["description"]
    schema = function.get("parameters")
    converted["input_schema"] = schema if isinstance(schema, dict) else {"type": "object"}
    if function.get("strict") is True:  # only when asked: false is Anthropic's default
        converted["strict"] = True
    return converted


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    converted: dict[str, Any] | None
    if choice is None:
        converted = None
    elif isinstance(choice, str) and choice in _TOOL_CHOICE:
        converted = {"type": _TOOL_CHOICE[choice]}
    elif (
        isinstance(choice, dict)
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        converted = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest("`tool_choice` is not a valid choice", param="tool_choice")
    if parallel is False:
        if converted is None:
            converted = {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted
