"""GET /v1/models and /v1/models/{model}: the aliases the calling key may use, in its dialect.

OpenAI's shapes (a list, a model object, its error object) unless the request carries
`anthropic-version`, which the Anthropic SDK always sends: then Anthropic's (a page
`{data, has_more, first_id, last_id}` cut by `limit`, `after_id`, `before_id`; a model object;
its error object), so `client.models.list()` and `client.models.retrieve(id)` work in both SDKs.
An alias the key may not use is a 404 like an unknown one: a key never learns which aliases
exist for other keys.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send, send_bytes, send_error
from gateway.api.request_context import RequestHeaders, authenticate, new_request_id
from gateway.api.request_report import method_label, report_request
from gateway.errors import BadRequest, GatewayError, MethodNotAllowed, NotFound
from gateway.runtime import Gateway
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord

__all__ = ["MODEL_ROUTE", "ROUTE", "anthropic_page", "models_handler", "serve_models"]

ROUTE = "/v1/models"
MODEL_ROUTE = "/v1/models/{model_id:path}"
"""One model. Served by the hot-path dispatcher as a prefix of the same handler: Litestar 2.25
cannot route a path parameter to a raw ASGI handler (its trie looks the parameters up under the
method, where an ASGI route stores them under "asgi")."""
MODEL_LABEL = "/v1/models/{model}"
"""The route label of one model's requests (metrics, spans, access lines): never the id itself."""

_encoder = msgspec.json.Encoder()
_SHOWN_ID = 200
"""At most this much of an unknown model id is echoed in the 404 message."""
_DEFAULT_LIMIT = 20
_MAX_LIMIT = 1000
"""Anthropic's page size: 20 unless `limit` says otherwise, 1 to 1000."""


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def anthropic_page(ids: Sequence[str], query_string: bytes) -> tuple[list[str], bool]:
    """The ids of one page of Anthropic's model list, and whether more lie beyond it.

    `after_id` pages forward, `before_id` backward (the page ends just before it); an id not in
    `ids` gives an empty page. A `limit` outside 1..1000 is a BadRequest.
    """
    query = parse_qs(query_string.decode("latin-1"))
    raw_limit = _last(query, "limit")
    limit = _DEFAULT_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIMIT:
            raise BadRequest(
                f"limit: must be an integer from 1 to {_MAX_LIMIT}", param="limit", code="bad_limit"
            )
    after, before = _last(query, "after_id"), _last(query, "before_id")
    cursor = before if before is not None else after
    if cursor is None:
        return list(ids[:limit]), len(ids) > limit
    try:
        at = ids.index(cursor)
    except ValueError:
        return [], False
    if before is not None:
        start = max(at - limit, 0)
        return list(ids[start:at]), start > 0
    return list(ids[at + 1 : at + 1 + limit]), len(ids) > at + 1 + limit


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _openai_model(alias: str, created: int) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "keyway"}


def _anthropic_model(alias: str, created: int) -> dict[str, Any]:
    return {"type": "model", "id": alias, "display_name": alias, "created_at": _rfc3339(created)}


def _not_found(model_id: str) -> NotFound:
    shown = model_id if len(model_id) <= _SHOWN_ID else model_id[:_SHOWN_ID] + "..."
    return NotFound(
        f"the model '{shown}' does not exist or this key may not use it", code="model_not_found"
    )


def _answer(
    gw: Gateway, scope: Scope, record: AccessRecord, model_id: str, anthropic: bool
) -> bytes:
    """The body of a 200; raises the GatewayError to send instead."""
    if scope["method"] != "GET":
        route = MODEL_LABEL if model_id else ROUTE
        raise MethodNotAllowed(f"use GET for {route}", allow="GET", code="method_not_allowed")
    client = authenticate(gw, RequestHeaders(scope))
    record.client_id = client.id
    created = int(time.time())
    model = _anthropic_model if anthropic else _openai_model
    if model_id:
        record.model = model_id
        if gw.table.chain(model_id) is None or not client.may_use(model_id):
            raise _not_found(model_id)
        return _encoder.encode(model(model_id, created))
    aliases = [alias for alias in gw.table.aliases if client.may_use(alias)]
    if not anthropic:
        data = [_openai_model(alias, created) for alias in aliases]
        return _encoder.encode({"object": "list", "data": data})
    page, has_more = anthropic_page(aliases, scope.get("query_string", b""))
    return _encoder.encode(
        {
            "data": [_anthropic_model(alias, created) for alias in page],
            "has_more": has_more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }
    )


async def serve_models(gw: Gateway, scope: Scope, send: Send) -> None:
    """GET /v1/models (the list) or /v1/models/{model} (one model), whichever `scope` asks."""
    started = time.perf_counter()
    model_id = scope["path"][len(ROUTE) :].strip("/")
    route = MODEL_LABEL if model_id else ROUTE
    method = method_label(scope["method"])
    record = AccessRecord(
        request_id=new_request_id(), route=route, status=500, latency_ms=0, method=method
    )
    anthropic = any(name == b"anthropic-version" for name, _ in scope["headers"])
    request_id = record.request_id.encode()
    base = [(b"x-request-id", request_id)]
    if anthropic:
        base.insert(0, (b"request-id", request_id))
    with tracing.server_span(scope["headers"], route, method) as span:
        try:
            try:
                body = _answer(gw, scope, record, model_id, anthropic)
            except GatewayError as err:
                record.status, record.error = err.status, err.code or ""
                await send_error(send, err, base, anthropic=anthropic)
                return
            record.status = 200
            await send_bytes(send, 200, body, base)
        finally:
            report_request(record, span, started, scope["headers"])


def models_handler(gw: Gateway) -> Any:
    """The Litestar route handler of GET /v1/models, bound to `gw`; its function also serves
    MODEL_ROUTE (see `routes.hot_routes`)."""

    @asgi(ROUTE, copy_scope=False)
    async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
        await serve_models(gw, scope, send)

    return list_models
