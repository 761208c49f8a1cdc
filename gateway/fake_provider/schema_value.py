"""The smallest JSON document that satisfies a JSON schema: the fake model's structured output.

Real vendors decode a ``json_schema`` format constrained, so a client parses the answer into
its own type without checking it; the fake answers the same way. The document is minimal and
deterministic: an object holds its required properties only, a string is "x" (or a sample of
its ``format``), a number or integer 1 (or its ``minimum``), a boolean true, an array one item
(or ``minItems``), an ``enum`` its first value, a ``const`` itself. ``$ref`` (into ``$defs`` or
``definitions``), ``anyOf``/``oneOf`` (the first branch that is not null) and ``allOf`` are
followed, which covers the schemas Pydantic, Zod and the SDKs' strict mode write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["document_for"]

_NULL_DEPTH = 8
"""Past this depth an ``anyOf`` that allows null takes it: a recursive schema (a tree of
nodes) ends there."""
_MAX_DEPTH = 32
"""The last resort for a recursive schema with no null to end on: null, valid or not."""

_FORMATS: dict[str, str] = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "x@example.com",
    "uri": "https://example.com/x",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def document_for(schema: Any) -> Any:
    """A value that ``schema`` accepts; ``{}`` for a schema that is not an object."""
    if not isinstance(schema, Mapping):
        return {}
    return _value(schema, schema, 0)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema a local ``$ref`` ("#", "#/$defs/Name", "#/definitions/Name") points at."""
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _first_branch(branches: list[Any], depth: int) -> Mapping[str, Any]:
    """The first branch that is not null, or, deep in the document, a null one if any."""
    schemas = [b for b in branches if isinstance(b, Mapping)]
    nulls = [b for b in schemas if b.get("type") == "null"]
    if nulls and depth > _NULL_DEPTH:
        return nulls[0]
    return next((b for b in schemas if b.get("type") != "null"), schemas[0] if schemas else {})


def _merged(parts: list[Any]) -> dict[str, Any]:
    """``allOf`` as one schema: properties and required lists joined, other keywords the last's."""
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        merged.update(part)
        properties.update(part.get("properties") or {})
        required.extend(part.get("required") or ())
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _kind(schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
    return kind


def _value(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        return _value({**_resolve(ref, root), **_without(schema, "$ref")}, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for word in ("anyOf", "oneOf"):
        branches = schema.get(word)
        if isinstance(branches, list) and branches:
            rest = _without(schema, word)
            return _value({**rest, **_first_branch(branches, depth)}, root, depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, list) and parts:
        return _value(_merged([_without(schema, "allOf"), *parts]), root, depth + 1)
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x"  # no type: any value is valid


def _without(schema: Mapping[str, Any], word: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != word}


def _object(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    document: dict[str, Any] = {}
    for name in schema.get("required") or ():
        prop = properties.get(name)
        document[name] = _value(prop, root, depth + 1) if isinstance(prop, Mapping) else "x"
    return document


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and prefix:
        return [_value(p, root, depth + 1) for p in prefix if isinstance(p, Mapping)]
    items = schema.get("items")
    maximum = schema.get("maxItems")
    count = max(1, int(schema.get("minItems") or 0))
    if isinstance(maximum, int):
        count = min(count, maximum)
    item = _value(items, root, depth + 1) if isinstance(items, Mapping) else "x"
    return [item] * count


def _string(schema: Mapping[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), "x")
    minimum = schema.get("minLength")
    if isinstance(minimum, int) and len(text) < minimum:
        text += "x" * (minimum - len(text))
    return text


def _number(schema: Mapping[str, Any], kind: str) -> int | float:
    value: int | float = 1
    for word, step in (("minimum", 0), ("exclusiveMinimum", 1)):
        bound = schema.get(word)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and value < bound + step:
            value = bound + step
    for word, step in (("maximum", 0), ("exclusiveMaximum", 1)):
        bound = schema.get(word)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and value > bound - step:
            value = bound - step
    return int(value) if kind == "integer" and value == int(value) else value
