"""An OpenAI Responses API request rewritten as an Anthropic Messages request.

    Responses                                   Anthropic
    instructions, input                     ->  ``system`` (a string when there is one text,
                                                else text blocks) and ``messages``: see
                                                ``responses_input``
    tools[] {type: function, name, description, parameters, strict}
                                            ->  tools[] {name, description, input_schema, strict}
    tool_choice auto/none/required/{function}  ->  {type: auto/none/any/tool}
    tool_choice {allowed_tools, mode}       ->  the tools not allowed left out; auto/any
    parallel_tool_calls: false              ->  tool_choice.disable_parallel_tool_use: true
    max_output_tokens                       ->  max_tokens (``DEFAULT_MAX_TOKENS`` when absent,
                                                as for chat: Anthropic needs one)
    temperature                             ->  temperature, clamped to Anthropic's 0..1
    top_p, stream                           ->  top_p, stream
    user (else safety_identifier)           ->  metadata.user_id
    text.format json_schema                 ->  output_config.format (see ``structured_output``)
    reasoning.effort                        ->  thinking (and output_config.effort), for models
                                                that think (see ``reasoning``)

Anthropic keeps nothing between requests, so what only a stored conversation can give is a 400
``unsupported_parameter`` naming the field: ``previous_response_id``, ``conversation``,
``prompt`` (a stored prompt template), ``background: true`` and ``item_reference`` input items.
``store`` is accepted either way, true being the API's default, and nothing is stored: the
response says ``store: false``, and a follow-up that points back at it is refused as above.

Dropped, leaving the answer's form as it is: ``metadata`` (labels of a stored response, echoed
back in the answer), service_tier, prompt_cache_key, prompt_cache_retention, stream_options,
max_tool_calls (it caps built-in tools, which are refused), ``truncation`` (only an input over
the context window tells "auto" from "disabled"; Anthropic then answers 400), text.verbosity
(as chat drops it), reasoning.summary (thinking is not returned, see ``anthropic_to_responses``),
``include`` values that ask for more of items this translation never returns, and any field
given as null. Refused with a 400: every other field this module does not know, tools other than
functions, logprobs (``top_logprobs``, ``include`` of ``message.output_text.logprobs``) and text
formats other than json_schema, and what ``responses_input`` refuses. Malformed input is a 400
too (``BadRequest``), never another exception.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.translate.reasoning import apply_reasoning_effort
from gateway.translate.refusals import unsupported
from gateway.translate.request_to_anthropic import DEFAULT_MAX_TOKENS, function_to_anthropic_tool
from gateway.translate.responses_input import anthropic_conversation
from gateway.translate.structured_output import anthropic_output_format

__all__ = ["responses_to_anthropic"]

_TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_TRANSLATED = frozenset(
    {
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream",
        "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "user",
        "safety_identifier", "metadata", "include", "top_logprobs", "background", "store",
        "truncation",
    }
)  # fmt: skip
_DROPPED = frozenset(
    {"service_tier", "prompt_cache_key", "prompt_cache_retention", "stream_options",
     "max_tool_calls"}
)  # fmt: skip
_NOTHING_STORED = "nothing is stored, so send the whole conversation in `input`"
_STATEFUL = {
    "previous_response_id": _NOTHING_STORED,
    "conversation": _NOTHING_STORED,
    "prompt": "there are no stored prompts, so send `instructions` and `input`",
}
_LOGPROBS = "message.output_text.logprobs"


def responses_to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic Messages request for Responses API request ``body``, aimed at ``model``."""
    _refuse_fields(body)
    system, turns = anthropic_conversation(body.get("instructions"), body.get("input"))
    if not turns:
        raise BadRequest("`input` must hold at least one user or assistant item", param="input")
    limit = _max_output_tokens(body.get("max_output_tokens"))
    out: dict[str, Any] = {"model": model, "max_tokens": limit or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = system[0] if len(system) == 1 else [_text(text) for text in system]
    out["messages"] = turns

    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), tools)
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(max(temperature, 0), 1)
    if isinstance(body.get("top_p"), int | float):
        out["top_p"] = body["top_p"]
    for name in ("user", "safety_identifier"):
        if isinstance(body.get(name), str) and body[name]:
            out["metadata"] = {"user_id": body[name]}
            break
    output_format = _output_format(body.get("text"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    effort = _reasoning_effort(body.get("reasoning"))
    apply_reasoning_effort(out, effort, model, client_limit=bool(limit))
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
    return out


def _refuse_fields(body: dict[str, Any]) -> None:
    """Raise for the first field of ``body`` that this translation cannot honour."""
    for name, value in body.items():
        if value is None or name in _DROPPED:
            continue
        if name in _STATEFUL:
            raise unsupported(name, f"`{name}` is not supported by this model: {_STATEFUL[name]}")
        if name not in _TRANSLATED:
            raise unsupported(name, f"`{name}` is not supported by this model")
    if body.get("background") is True:
        raise unsupported("background", "background responses are not available on this model")
    if body.get("store") is not None and not isinstance(body["store"], bool):
        raise BadRequest("`store` must be a boolean", param="store")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and top_logprobs != 0:
        raise unsupported("top_logprobs", "logprobs are not available from this model")
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(isinstance(x, str) for x in include):
            raise BadRequest("`include` must be a list of strings", param="include")
        if _LOGPROBS in include:
            raise unsupported("include", "logprobs are not available from this model")
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise BadRequest("`truncation` must be auto or disabled", param="truncation")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise BadRequest("`metadata` must be an object", param="metadata")


def _max_output_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(
            "`max_output_tokens` must be a positive integer", param="max_output_tokens"
        )
    return value


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("`tools` must be a list", param="tools")
    result = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise unsupported(
                f"tools[{i}]", f"{kind!r} tools are not supported by this model: only functions"
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequest("a function tool needs a name", param=f"tools[{i}].name")
        result.append(function_to_anthropic_tool(tool))
    return result


def _tool_choice(choice: Any, parallel: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Anthropic's ``tool_choice``; an ``allowed_tools`` choice also narrows ``tools``."""
    converted: dict[str, Any] | None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if choice is None:
        converted = None
    elif isinstance(choice, str) and choice in _TOOL_CHOICE:
        converted = {"type": _TOOL_CHOICE[choice]}
    elif kind == "function" and isinstance(choice.get("name"), str):
        converted = {"type": "tool", "name": choice["name"]}
    elif kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        allowed = choice.get("tools")
        if not isinstance(allowed, list) or not all(
            isinstance(t, dict) and t.get("type") == "function" for t in allowed
        ):
            raise unsupported("tool_choice.tools", "only function tools can be allowed")
        names = {t.get("name") for t in allowed}
        tools[:] = [tool for tool in tools if tool["name"] in names]
        converted = {"type": _TOOL_CHOICE[choice["mode"]]}
    else:
        raise unsupported("tool_choice", "this `tool_choice` is not supported by this model")
    if parallel is False:
        if converted is None:
            converted = {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def _output_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise BadRequest("`text` must be an object", param="text")
    for key, value in text.items():
        if key not in ("format", "verbosity") and value is not None:
            raise unsupported(f"text.{key}", f"`text.{key}` is not supported by this model")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind != "json_schema":
        hint = "; use json_schema" if kind == "json_object" else ""
        raise unsupported("text.format", f"text format {kind!r} is not supported{hint}")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("a json_schema format needs a `schema` object", param="text.format.schema")
    return anthropic_output_format({"type": "json_schema", "json_schema": {"schema": schema}})


def _reasoning_effort(reasoning: Any) -> str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise BadRequest("`reasoning` must be an object", param="reasoning")
    for key, value in reasoning.items():
        if key not in ("effort", "summary", "generate_summary") and value is not None:
            raise unsupported(f"reasoning.{key}", f"`reasoning.{key}` is not supported")
    effort = reasoning.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise BadRequest(
            f"unknown reasoning.effort {effort!r}: use {', '.join(_EFFORTS)}",
            param="reasoning.effort",
        )
    return effort
