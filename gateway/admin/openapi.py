"""The admin API's OpenAPI document: Litestar's, with each request body described as msgspec checks it.

Litestar's generator drops what msgspec enforces on the admin input Structs: unknown fields are
refused (`additionalProperties: false`), and constraints inside `X | None` / `X | UNSET` unions
and on list items (`exclusiveMinimum`, patterns) vanish. A client or a fuzzer reading that
document would send bodies the API then refuses with 400. msgspec's own JSON Schema of those
Structs is exact, so every page under /docs that shows the admin API (JSON, YAML, the HTML page
of gateway.apidocs) is rendered with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.plugins import OpenAPIRenderPlugin

from gateway.admin.schemas import (
    ClientCreate,
    ClientPatch,
    KeyCreate,
    KeyDisable,
    KeyPatch,
    ModelPut,
    ProviderCreate,
    ProviderPatch,
    SecretReplace,
)

if TYPE_CHECKING:
    from litestar import Request, Router

__all__ = ["ADMIN_INPUT_SCHEMAS", "ExactInputs", "with_exact_inputs"]

_INPUTS = (ProviderCreate, ProviderPatch, KeyCreate, KeyPatch, SecretReplace, KeyDisable, ModelPut,
           ClientCreate, ClientPatch)  # fmt: skip

ADMIN_INPUT_SCHEMAS: dict[str, Any] = msgspec.json.schema_components(
    _INPUTS, ref_template="#/components/schemas/{name}"
)[1]
"""Component name -> msgspec's JSON Schema of it (the Structs above and those they contain)."""


def with_exact_inputs(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the admin input components replaced; the cached original is not touched."""
    components = document.get("components") or {}
    schemas = components.get("schemas") or {}
    exact = {name: schema for name, schema in ADMIN_INPUT_SCHEMAS.items() if name in schemas}
    if not exact:
        return document
    return {**document, "components": {**components, "schemas": {**schemas, **exact}}}


class ExactInputs(OpenAPIRenderPlugin):
    """Wraps a Litestar render plugin: same paths and media type, the corrected document."""

    def __init__(self, inner: OpenAPIRenderPlugin) -> None:
        super().__init__(path=inner.paths, media_type=inner.media_type)
        self.inner = inner

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.inner.render(request, with_exact_inputs(openapi_schema))

    def receive_router(self, router: Router) -> None:
        self.inner.receive_router(router)
