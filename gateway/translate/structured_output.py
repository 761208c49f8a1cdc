"""Structured output in either dialect: OpenAI ``response_format`` <-> Anthropic
``output_config.format``.

    OpenAI response_format                          Anthropic output_config.format
    {type: json_schema, json_schema: {schema: S}}   {type: json_schema, schema: S}
      (strict: true; name "output" the other way)
    {type: text}                                    (nothing: the default)
    {type: json_object}                             none: a 400 (see below)

Anthropic decodes every ``json_schema`` format constrained, as OpenAI does with
``strict: true``; so the way to OpenAI is strict, and a schema OpenAI's strict mode refuses (a
property left out of ``required``) is refused by the upstream with a message that says why,
rather than loosened without a word. ``json_schema.name`` and ``description`` have no Anthropic
field; the name is a label, and the description is dropped.

JSON mode (``json_object``: any JSON object) has no Anthropic counterpart: Anthropic wants
``additionalProperties: false`` on every object of a schema, so ``{"type": "object"}`` would
mean the empty object, not any object. It is a 400 ``unsupported_parameter``, as is any format
this module does not know: structured output is a promise about the answer's form, never
dropped. The beta spelling ``output_format`` (before ``output_config.format``) is read too.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.translate.refusals import unsupported

__all__ = ["anthropic_output_format", "openai_response_format"]

_SCHEMA_NAME = "output"
"""OpenAI requires a name for a json_schema format; Anthropic has none to give."""


def anthropic_output_format(response_format: Any) -> dict[str, Any] | None:
    """The Anthropic ``output_config.format`` for OpenAI's ``response_format``; None for none."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        raise unsupported(
            "response_format",
            "response_format json_object is not supported by this model; use json_schema",
        )
    if kind != "json_schema":
        raise unsupported(
            "response_format", f"response_format type {kind!r} is not supported by this model"
        )
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise unsupported(
            "response_format.json_schema.schema",
            "a json_schema response_format needs a schema object for this model",
        )
    return {"type": "json_schema", "schema": schema}


def openai_response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` for Anthropic request ``body``; None when it asks none."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise BadRequest("`output_config` must be an object", param="output_config")
    param, fmt = "output_config.format", (config or {}).get("format")
    if fmt is None:
        param, fmt = "output_format", body.get("output_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind != "json_schema":
        raise unsupported(param, f"output format {kind!r} is not supported by this model")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("a json_schema format needs a `schema` object", param=f"{param}.schema")
    return {
        "type": "json_schema",
        "json_schema": {"name": _SCHEMA_NAME, "schema": schema, "strict": True},
    }
