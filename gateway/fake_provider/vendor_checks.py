"""The requests the real vendors refuse with a 400, refused here the same way.

A fake that answers whatever it is sent lets a gateway pass on (or build) bodies that
api.openai.com or api.anthropic.com would refuse, and every test above it stays green. So the
fake makes the checks the vendors make that a gateway can get wrong, with their messages,
``param`` and ``code``:

    OpenAI chat        ``user`` longer than 64 characters; ``max_tokens`` or
                       ``max_completion_tokens`` above the model's output limit; a
                       ``json_schema`` format without its ``json_schema``; a ``json_object``
                       format with no "json" in the messages; a strict schema (format or
                       function) that strict mode refuses
    OpenAI Responses   a strict schema (``text.format`` or function) that strict mode refuses
    Anthropic messages no ``model``, no ``messages`` or no ``max_tokens``; a role other than
                       user and assistant in ``messages`` ("system" belongs at the top level);
                       ``max_tokens`` above the model's output limit

Strict mode (``strict: true``) wants every object of the schema closed
(``additionalProperties: false``) with all its properties in ``required``, and an object at
the root of a response format. The output limits are those Keyway clamps to
(``gateway/translate/output_limits.py``): one table of the vendors' documented limits; a model
not in it has no limit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.fake_provider.anthropic_wire import InputMessage, MessagesRequest
from gateway.fake_provider.openai_wire import ChatRequest, message_text
from gateway.fake_provider.responses_wire import ResponsesRequest
from gateway.translate.output_limits import known_max_output_tokens

__all__ = [
    "MAX_OPENAI_USER",
    "Refusal",
    "check_anthropic_roles",
    "check_chat",
    "check_messages",
    "check_responses",
    "strict_schema_error",
]

MAX_OPENAI_USER = 64
"""The longest ``user`` api.openai.com accepts."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 400 as the vendor words it (``param`` and ``code`` exist in OpenAI's errors only)."""

    message: str
    param: str | None = None
    code: str | None = None


# -- OpenAI -----------------------------------------------------------------------------------


def check_chat(request: ChatRequest, model: str) -> Refusal | None:
    """What api.openai.com refuses in a chat completion request for ``model``; None if nothing."""
    user = request.user
    if user is not None and len(user) > MAX_OPENAI_USER:
        return Refusal(
            f"Invalid 'user': string too long. Expected a string with maximum length "
            f"{MAX_OPENAI_USER}, but got a string with length {len(user)} instead.",
            "user",
            "string_above_max_length",
        )
    limit = known_max_output_tokens(model)
    for name, value in (
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ):
        if limit is not None and value is not None and value > limit:
            return Refusal(
                f"{name} is too large: {value}. This model supports at most {limit} completion "
                f"tokens, whereas you provided {value}.",
                name,
                "invalid_value",
            )
    for tool in request.tools or ():
        function = tool.function
        if function is not None and function.strict:
            refusal = _strict_function(function.name, function.parameters, "tools")
            if refusal is not None:
                return refusal
    return _check_response_format(request)


def _check_response_format(request: ChatRequest) -> Refusal | None:
    response_format = request.response_format or {}
    kind = response_format.get("type")
    if kind == "json_object" and not any(
        "json" in message_text(message).lower() for message in request.messages
    ):
        return Refusal(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of "
            "type 'json_object'.",
            "messages",
        )
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return Refusal(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
            "missing_required_parameter",
        )
    if not spec.get("strict"):
        return None
    error = strict_schema_error(spec.get("schema"), root_object=True)
    if error is None:
        return None
    name = spec.get("name")
    return Refusal(f"Invalid schema for response_format '{name}': {error}", "response_format")


def check_responses(request: ResponsesRequest) -> Refusal | None:
    """What api.openai.com refuses in a Responses request; None if nothing."""
    for tool in request.tools or ():
        if tool.get("type") == "function" and tool.get("strict") is True:
            refusal = _strict_function(tool.get("name"), tool.get("parameters"), "tools")
            if refusal is not None:
                return refusal
    text_format = (request.text or {}).get("format")
    if not isinstance(text_format, dict) or text_format.get("type") != "json_schema":
        return None
    if not text_format.get("strict"):
        return None
    error = strict_schema_error(text_format.get("schema"), root_object=True)
    if error is None:
        return None
    name = text_format.get("name")
    return Refusal(f"Invalid schema for response_format '{name}': {error}", "text.format.schema")


def _strict_function(name: Any, parameters: Any, param: str) -> Refusal | None:
    error = strict_schema_error(parameters if parameters is not None else {"type": "object"})
    if error is None:
        return None
    return Refusal(
        f"Invalid schema for function '{name}': {error}", param, "invalid_function_parameters"
    )


def strict_schema_error(schema: Any, *, root_object: bool = False) -> str | None:
    """Why OpenAI's strict mode refuses ``schema`` (its own words), or None when it takes it."""
    if not isinstance(schema, Mapping):
        return "schema must be a JSON Schema object."
    if root_object and not _is_object(schema):
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{schema.get('type')}\"'."
    return _closed_objects_error(schema, ())


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _closed_objects_error(schema: Mapping[str, Any], context: tuple[str, ...]) -> str | None:
    if _is_object(schema):
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        properties = schema.get("properties")
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        for name in properties if isinstance(properties, Mapping) else ():
            if name not in required:
                return (
                    f"In context={context!r}, 'required' is required to be supplied and to be "
                    f"an array including every key in properties. Missing '{name}'."
                )
    for word in ("properties", "$defs", "definitions"):
        children = schema.get(word)
        if isinstance(children, Mapping):
            for name, child in children.items():
                error = _child_error(child, (*context, word, str(name)))
                if error is not None:
                    return error
    for word in ("anyOf", "oneOf", "allOf", "prefixItems"):
        branches = schema.get(word)
        if isinstance(branches, list):
            for index, child in enumerate(branches):
                error = _child_error(child, (*context, word, str(index)))
                if error is not None:
                    return error
    return _child_error(schema.get("items"), (*context, "items"))


def _child_error(child: Any, context: tuple[str, ...]) -> str | None:
    return _closed_objects_error(child, context) if isinstance(child, Mapping) else None


# -- Anthropic --------------------------------------------------------------------------------


def check_messages(request: MessagesRequest) -> Refusal | None:
    """What api.anthropic.com refuses in a Messages request; None if nothing."""
    if not request.model:
        return Refusal("model: Field required")
    if not request.messages:
        return Refusal("messages: at least one message is required")
    if request.max_tokens is None:
        return Refusal("max_tokens: Field required")
    refusal = check_anthropic_roles(request.messages)
    if refusal is not None:
        return refusal
    limit = known_max_output_tokens(request.model)
    if limit is not None and request.max_tokens > limit:
        return Refusal(
            f"max_tokens: {request.max_tokens} > {limit}, which is the maximum allowed number "
            f"of output tokens for {request.model}"
        )
    return None


def check_anthropic_roles(messages: list[InputMessage]) -> Refusal | None:
    """Anthropic takes turns of user and assistant only; the system prompt is a top-level field."""
    for index, message in enumerate(messages):
        if message.role == "system":
            return Refusal(
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if message.role not in ("user", "assistant"):
            return Refusal(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    return None
