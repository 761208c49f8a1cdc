"""OpenAPI documents rendered as one static HTML page, on the server: no script, no remote asset.

The page at /docs must work on a machine without internet access, so it is plain HTML and one
stylesheet served by the gateway itself. Each API (public, admin) becomes a section: its
description, authentication, operations grouped by tag (method, path, parameters, request body,
responses) and its component schemas. Schemas are shown as a type expression (`array of
ChatMessage`, `integer | null`) with their constraints, inline objects as nested property tables,
and references as links to the schema's own entry further down the page.

Only what the two documents use of OpenAPI 3.0/3.1 is interpreted; anything else is ignored,
never an error, so a later edit of either document cannot break /docs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ["ApiSection", "render_page"]

_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
_MAX_DEPTH = 8
"""Inline objects nested deeper than this are shown by their type only."""
_MAX_LITERAL = 160
"""A default or example longer than this (as JSON) is cut."""
_CODE = re.compile(r"`([^`]+)`")
_SLUG = re.compile(r"[^a-z0-9]+")
_json = msgspec.json.Encoder(order="deterministic")


@dataclass(frozen=True)
class ApiSection:
    """One API on the page: `document` rendered under anchors starting with `key`."""

    key: str
    title: str
    document: Mapping[str, Any] | None
    links: tuple[tuple[str, str], ...] = ()
    """(label, href) of the machine-readable forms of the document."""
    note: str = ""
    """Shown instead of the operations when `document` is None (the API is off)."""


def render_page(title: str, version: str, stylesheet: str, sections: Iterable[ApiSection]) -> str:
    """The whole page; `stylesheet` is the (same-origin) href of its CSS."""
    sections = list(sections)
    nav = "".join(
        f'<li><a href="#{_attr(s.key)}">{_esc(s.title)}</a></li>' for s in sections
    ) + "".join(
        f'<li><a href="{_attr(href)}">{_esc(label)}</a></li>'
        for s in sections
        for label, href in s.links
    )
    body = "".join(_Section(s).render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)} API documentation</title>\n"
        f'<link rel="stylesheet" href="{_attr(stylesheet)}">\n</head>\n<body>\n'
        f'<header><h1>{_esc(title)} <span class="version">{_esc(version)}</span></h1>'
        f"<nav><ul>{nav}</ul></nav></header>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


# -- text -------------------------------------------------------------------------------------


def _esc(text: object) -> str:
    return html.escape(str(text), quote=False)


def _attr(text: object) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escaped text, with `backticks` as <code>."""
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", _esc(text))


def _prose(text: object, css: str = "description") -> str:
    """Paragraphs split on blank lines; single line breaks are reflowed."""
    if not isinstance(text, str) or not text.strip():
        return ""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    inner = "".join(f"<p>{_inline(p)}</p>" for p in paragraphs if p)
    return f'<div class="{css}">{inner}</div>'


def _literal(value: Any) -> str:
    text = _json.encode(value).decode()
    if len(text) > _MAX_LITERAL:
        text = text[: _MAX_LITERAL - 3] + "..."
    return f"<code>{_esc(text)}</code>"


def _slug(*parts: str) -> str:
    return "-".join(_SLUG.sub("-", p.lower()).strip("-") or "root" for p in parts)


# -- one API ----------------------------------------------------------------------------------


class _Section:
    def __init__(self, section: ApiSection) -> None:
        self.section = section
        self.key = section.key
        self.doc: Mapping[str, Any] = section.document or {}
        components = self.doc.get("components")
        self.components: Mapping[str, Any] = components if isinstance(components, dict) else {}

    # references

    def _resolve(self, item: Any) -> Any:
        """`item` with a local `$ref` followed (a few hops at most); anything else as is."""
        for _ in range(8):
            if not (isinstance(item, dict) and isinstance(item.get("$ref"), str)):
                return item
            kind, name = _ref_parts(item["$ref"])
            if kind is None:
                return item
            group = self.components.get(kind)
            target = group.get(name) if isinstance(group, dict) else None
            if target is None:
                return {}
            item = target
        return item

    def _schema_anchor(self, name: str) -> str:
        return _slug(self.key, "schema", name)

    def _ref_link(self, ref: str) -> str:
        kind, name = _ref_parts(ref)
        if kind == "schemas" and name in (self.components.get("schemas") or {}):
            return f'<a href="#{_attr(self._schema_anchor(name))}">{_esc(name)}</a>'
        return f"<code>{_esc(ref)}</code>"

    # the page section

    def render(self) -> str:
        s = self.section
        head = f'<section class="api" id="{_attr(self.key)}">\n<h2>{_esc(s.title)}</h2>\n'
        if s.document is None:
            return f"{head}{_prose(s.note, 'note')}</section>\n"
        info = self.doc.get("info") or {}
        links = " ".join(f'<a href="{_attr(href)}">{_esc(label)}</a>' for label, href in s.links)
        parts = [head]
        if info.get("title"):
            version = f" {info['version']}" if info.get("version") else ""
            parts.append(f'<p class="meta">{_esc(info["title"])}{_esc(version)}')
            parts.append(f" &middot; {links}</p>\n" if links else "</p>\n")
        parts.append(_prose(info.get("description")))
        parts.append(self._auth_schemes())
        groups = self._groups()
        parts.append(self._toc(groups))
        for tag, description, operations in groups:
            parts.append(f'<h3 id="{_attr(_slug(self.key, "tag", tag))}">{_esc(tag)}</h3>\n')
            parts.append(_prose(description))
            parts.extend(self._operation(path, method, op) for path, method, op in operations)
        parts.append(self._schemas())
        parts.append("</section>\n")
        return "".join(parts)

    def _auth_schemes(self) -> str:
        schemes = self.components.get("securitySchemes") or {}
        if not isinstance(schemes, dict) or not schemes:
            return ""
        rows = []
        for name, scheme in schemes.items():
            scheme = self._resolve(scheme)
            if not isinstance(scheme, dict):
                continue
            kind = scheme.get("type", "")
            if kind == "http":
                how = f"HTTP {scheme.get('scheme', '')}: <code>Authorization: {_esc(str(scheme.get('scheme', '')).title())} &lt;key&gt;</code>"
            elif kind == "apiKey":
                how = f"API key in the {_esc(scheme.get('in', ''))} <code>{_esc(scheme.get('name', ''))}</code>"
            else:
                how = _esc(kind)
            rows.append(
                f"<tr><td><code>{_esc(name)}</code></td><td>{how}</td>"
                f"<td>{_inline(str(scheme.get('description', '')))}</td></tr>"
            )
        return (
            "<h3>Authentication</h3>\n<table><thead><tr><th>scheme</th><th>how</th>"
            f"<th>description</th></tr></thead><tbody>{''.join(rows)}</tbody></table>\n"
        )

    def _groups(self) -> list[tuple[str, str, list[tuple[str, str, Mapping[str, Any]]]]]:
        """Operations by their first tag, in the document's tag order, then first appearance."""
        declared: dict[str, str] = {}
        for tag in self.doc.get("tags") or []:
            if isinstance(tag, dict) and isinstance(tag.get("name"), str):
                declared[tag["name"]] = str(tag.get("description") or "")
        grouped: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {t: [] for t in declared}
        for path, item in (self.doc.get("paths") or {}).items():
            item = self._resolve(item)
            if not isinstance(item, dict):
                continue
            for method in _METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                tags = op.get("tags") or ["endpoints"]
                grouped.setdefault(str(tags[0]), []).append((path, method, op))
        return [(tag, declared.get(tag, ""), ops) for tag, ops in grouped.items() if ops]

    def _op_anchor(self, path: str, method: str) -> str:
        return _slug(self.key, method, path)

    def _toc(self, groups: list[tuple[str, str, list[tuple[str, str, Mapping[str, Any]]]]]) -> str:
        rows = []
        for tag, _, operations in groups:
            rows.append(f'<tr class="group"><th colspan="3">{_esc(tag)}</th></tr>')
            for path, method, op in operations:
                anchor = _attr(self._op_anchor(path, method))
                rows.append(
                    f'<tr><td><span class="method {_attr(method)}">{_esc(method.upper())}</span></td>'
                    f'<td><a href="#{anchor}"><code>{_esc(path)}</code></a></td>'
                    f"<td>{_inline(str(op.get('summary', '')))}</td></tr>"
                )
        return f'<h3>Endpoints</h3>\n<table class="toc"><tbody>{"".join(rows)}</tbody></table>\n'

    def _security(self, op: Mapping[str, Any]) -> str:
        requirements = op.get("security", self.doc.get("security"))
        if not isinstance(requirements, list):
            return ""
        alternatives = []
        for requirement in requirements:
            if isinstance(requirement, dict):
                names = " and ".join(f"<code>{_esc(n)}</code>" for n in requirement)
                alternatives.append(names or "none")
        shown = " or ".join(alternatives) if alternatives else "none"
        return f'<p class="auth">Authentication: {shown}</p>'

    def _operation(self, path: str, method: str, op: Mapping[str, Any]) -> str:
        parts = [
            f'<article class="operation" id="{_attr(self._op_anchor(path, method))}">',
            f'<h4><span class="method {_attr(method)}">{_esc(method.upper())}</span> '
            f"<code>{_esc(path)}</code></h4>",
        ]
        if op.get("summary"):
            parts.append(f'<p class="summary">{_inline(str(op["summary"]))}</p>')
        parts.append(_prose(op.get("description")))
        if op.get("deprecated"):
            parts.append('<p class="deprecated">Deprecated.</p>')
        parts.append(self._security(op))
        parts.append(self._parameters(path, op))
        parts.append(self._request_body(op.get("requestBody")))
        parts.append(self._responses(op.get("responses")))
        parts.append("</article>\n")
        return "".join(parts)

    def _parameters(self, path: str, op: Mapping[str, Any]) -> str:
        item = self._resolve((self.doc.get("paths") or {}).get(path)) or {}
        params = [*(item.get("parameters") or []), *(op.get("parameters") or [])]
        rows = []
        for raw in params:
            param = self._resolve(raw)
            if not isinstance(param, dict):
                continue
            schema = param.get("schema") or {}
            required = ' <span class="required">required</span>' if param.get("required") else ""
            notes = [_inline(str(param["description"]))] if param.get("description") else []
            notes.extend(self._constraints(schema))
            if "example" in param:
                notes.append(f"example {_literal(param['example'])}")
            rows.append(
                f"<tr><td><code>{_esc(param.get('name', ''))}</code>{required}</td>"
                f"<td>{_esc(param.get('in', ''))}</td><td>{self._type(schema)}</td>"
                f"<td>{'; '.join(notes)}</td></tr>"
            )
        if not rows:
            return ""
        return (
            "<h5>Parameters</h5><table><thead><tr><th>name</th><th>in</th><th>type</th>"
            f"<th>notes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def _request_body(self, raw: Any) -> str:
        body = self._resolve(raw)
        if not isinstance(body, dict):
            return ""
        required = " (required)" if body.get("required") else ""
        parts = [f"<h5>Request body{required}</h5>", _prose(body.get("description"))]
        for media, content in (body.get("content") or {}).items():
            schema = (content or {}).get("schema") or {}
            parts.append(f"<p><code>{_esc(media)}</code>: {self._type(schema)}</p>")
            parts.append(self._block(schema, 0))
        return "".join(parts)

    def _responses(self, raw: Any) -> str:
        if not isinstance(raw, dict) or not raw:
            return ""
        # statuses answered with the same response (a shared $ref) share one row
        merged: dict[bytes, tuple[list[str], Any]] = {}
        for status, response in raw.items():
            merged.setdefault(_json.encode(response), ([], response))[0].append(str(status))
        rows = []
        for statuses, response in merged.values():
            resolved = self._resolve(response)
            if not isinstance(resolved, dict):
                continue
            cells = [_inline(str(resolved.get("description", "")))]
            for media, content in (resolved.get("content") or {}).items():
                schema = (content or {}).get("schema") or {}
                cells.append(
                    f"<div><code>{_esc(media)}</code>: {self._type(schema)}"
                    f"{self._block(schema, 0)}</div>"
                )
            headers = resolved.get("headers") or {}
            if headers:
                shown = []
                for name, header in headers.items():
                    header = self._resolve(header)
                    if not isinstance(header, dict):
                        continue
                    text = _inline(str(header.get("description", "")))
                    shown.append(
                        f"<code>{_esc(name)}</code> {self._type(header.get('schema') or {})}"
                        + (f" ({text})" if text else "")
                    )
                if shown:
                    cells.append(f"<div>headers: {'; '.join(shown)}</div>")
            rows.append(
                f'<tr><td class="status">{_esc(", ".join(statuses))}</td>'
                f"<td>{''.join(cells)}</td></tr>"
            )
        return (
            "<h5>Responses</h5><table><thead><tr><th>status</th><th>answer</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )

    def _schemas(self) -> str:
        schemas = self.components.get("schemas") or {}
        if not isinstance(schemas, dict) or not schemas:
            return ""
        parts = ["<h3>Schemas</h3>\n"]
        for name, schema in schemas.items():
            parts.append(
                f'<article class="schema" id="{_attr(self._schema_anchor(name))}">'
                f"<h4>{_esc(name)}</h4><p>{self._type(schema)}</p>"
                f"{_prose(schema.get('description') if isinstance(schema, dict) else None)}"
            )
            notes = self._constraints(schema)
            if notes:
                parts.append(f'<p class="constraints">{"; ".join(notes)}</p>')
            parts.append(f"{self._block(schema, 0)}</article>\n")
        return "".join(parts)

    # schemas

    def _type(self, schema: Any) -> str:
        """A one-line type expression: `string`, `array of ChatMessage`, `integer | null`."""
        if not isinstance(schema, dict):
            return "any"
        if isinstance(schema.get("$ref"), str):
            return self._ref_link(schema["$ref"])
        alternatives: list[str] = []
        for key, joiner in (("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")):
            members = schema.get(key)
            if isinstance(members, list) and members:
                alternatives.append(joiner.join(self._type(m) for m in members))
        if "const" in schema:
            alternatives.append(_literal(schema["const"]))
        elif isinstance(schema.get("enum"), list):
            alternatives.append(" | ".join(_literal(v) for v in schema["enum"]))
        else:
            kinds = schema.get("type")
            kinds = kinds if isinstance(kinds, list) else [kinds] if isinstance(kinds, str) else []
            alternatives.extend(self._kind(schema, k) for k in kinds if k != "null")
            if "null" in kinds:
                alternatives.append("null")
        if not alternatives:
            alternatives.append("object" if "properties" in schema else "any")
        if schema.get("nullable") and "null" not in alternatives:
            alternatives.append("null")
        return " | ".join(alternatives)

    def _kind(self, schema: Mapping[str, Any], kind: str) -> str:
        if kind == "array":
            return f"array of {self._type(schema.get('items', {}))}"
        if kind == "object":
            extra = schema.get("additionalProperties")
            if "properties" not in schema and isinstance(extra, dict) and extra:
                return f"map of {self._type(extra)}"
            return "object"
        fmt = schema.get("format")
        return f"{_esc(kind)} ({_esc(fmt)})" if isinstance(fmt, str) else _esc(kind)

    def _constraints(self, schema: Any) -> list[str]:
        if not isinstance(schema, dict):
            return []
        notes: list[str] = []
        low, high = schema.get("minimum"), schema.get("maximum")
        ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if isinstance(ex_low, bool):  # OpenAPI 3.0: a flag on minimum
            ex_low, low = (low, None) if ex_low else (None, low)
        if isinstance(ex_high, bool):
            ex_high, high = (high, None) if ex_high else (None, high)
        for value, text in ((low, "&ge;"), (ex_low, "&gt;"), (high, "&le;"), (ex_high, "&lt;")):
            if isinstance(value, int | float):
                notes.append(f"{text} {_esc(value)}")
        for key, text in (("minLength", "length &ge;"), ("maxLength", "length &le;"),
                          ("minItems", "items &ge;"), ("maxItems", "items &le;")):  # fmt: skip
            if isinstance(schema.get(key), int):
                notes.append(f"{text} {schema[key]}")
        if isinstance(schema.get("pattern"), str):
            notes.append(f"pattern <code>{_esc(schema['pattern'])}</code>")
        if schema.get("additionalProperties") is False:
            notes.append("no other fields")
        if "default" in schema:
            notes.append(f"default {_literal(schema['default'])}")
        if "example" in schema:
            notes.append(f"example {_literal(schema['example'])}")
        elif isinstance(schema.get("examples"), list) and schema["examples"]:
            notes.append(f"example {_literal(schema['examples'][0])}")
        if schema.get("readOnly"):
            notes.append("read-only")
        if schema.get("deprecated"):
            notes.append("deprecated")
        # constraints of inline union members and list items (`integer | null` with its range)
        for member in [*(schema.get("oneOf") or []), *(schema.get("anyOf") or [])]:
            inner = self._constraints(member) if isinstance(member, dict) else []
            if inner and "$ref" not in member:
                notes.append(f"{self._type(member)}: {', '.join(inner)}")
        items = schema.get("items")
        if isinstance(items, dict) and "$ref" not in items:
            inner = self._constraints(items)
            if inner:
                notes.append(f"each item: {', '.join(inner)}")
        return notes

    def _needs_block(self, schema: Any, depth: int) -> bool:
        """Whether `schema` has inline structure (properties) worth a nested table."""
        if depth > _MAX_DEPTH or not isinstance(schema, dict) or "$ref" in schema:
            return False
        if isinstance(schema.get("properties"), dict) and schema["properties"]:
            return True
        members = [m for k in ("oneOf", "anyOf", "allOf") for m in schema.get(k) or []]
        nested = [*members, schema.get("items"), schema.get("additionalProperties")]
        return any(self._needs_block(m, depth + 1) for m in nested)

    def _block(self, schema: Any, depth: int) -> str:
        """The nested structure of an inline schema: property tables, variants, items."""
        if not self._needs_block(schema, depth):
            return ""
        parts: list[str] = []
        for key, label in (("oneOf", "one of"), ("anyOf", "any of"), ("allOf", "all of")):
            members = schema.get(key) or []
            if not any(self._needs_block(m, depth + 1) for m in members):
                continue
            items = "".join(f"<li>{self._type(m)}{self._block(m, depth + 1)}</li>" for m in members)
            parts.append(f'<div class="variants">{label}:<ol>{items}</ol></div>')
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            parts.append(self._properties(schema, properties, depth))
        for key, label in (("items", "each item"), ("additionalProperties", "each value")):
            if self._needs_block(schema.get(key), depth + 1):
                parts.append(
                    f'<div class="nested">{label}: {self._block(schema[key], depth + 1)}</div>'
                )
        return "".join(parts)

    def _properties(
        self, schema: Mapping[str, Any], properties: Mapping[str, Any], depth: int
    ) -> str:
        required = set(schema.get("required") or [])
        rows = []
        for name, prop in properties.items():
            mark = ' <span class="required">required</span>' if name in required else ""
            notes = []
            if isinstance(prop, dict) and prop.get("description"):
                notes.append(_inline(str(prop["description"])))
            notes.extend(self._constraints(prop))
            rows.append(
                f"<tr><td><code>{_esc(name)}</code>{mark}</td><td>{self._type(prop)}</td>"
                f"<td>{'; '.join(notes)}</td></tr>"
            )
            if self._needs_block(prop, depth + 1):
                rows.append(
                    f'<tr class="nested"><td></td><td colspan="2">'
                    f"{self._block(prop, depth + 1)}</td></tr>"
                )
        return (
            '<table class="properties"><thead><tr><th>field</th><th>type</th><th>notes</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


def _ref_parts(ref: str) -> tuple[str | None, str]:
    """("schemas", "Name") for "#/components/schemas/Name"; (None, ref) for anything else."""
    prefix = "#/components/"
    if not ref.startswith(prefix):
        return None, ref
    kind, _, name = ref[len(prefix) :].partition("/")
    name = name.replace("~1", "/").replace("~0", "~")
    return (kind, name) if name else (None, ref)
