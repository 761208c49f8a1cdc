"""GET /v1/models: the aliases the calling key may use, in OpenAI's list shape."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send, send_bytes, send_error
from gateway.api.request_context import RequestHeaders, authenticate, new_request_id
from gateway.api.request_report import report_request
from gateway.errors import GatewayError, MethodNotAllowed
from gateway.runtime import Gateway
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord

__all__ = ["models_handler"]

ROUTE = "/v1/models"
_encoder = msgspec.json.Encoder()


def models_handler(gw: Gateway) -> Any:
    """The Litestar route handler of GET /v1/models, bound to `gw`."""

    @asgi(ROUTE, copy_scope=False)
    async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        record = AccessRecord(
            request_id=new_request_id(), route=ROUTE, status=500, latency_ms=0, method="GET"
        )
        base = [(b"x-request-id", record.request_id.encode())]
        with tracing.server_span(scope["headers"], ROUTE, "GET") as span:
            try:
                try:
                    if scope["method"] != "GET":
                        raise MethodNotAllowed(
                            "use GET for /v1/models", allow="GET", code="method_not_allowed"
                        )
                    client = authenticate(gw, RequestHeaders(scope))
                except GatewayError as err:
                    record.status, record.error = err.status, err.code or ""
                    await send_error(send, err, base)
                    return
                record.client_id = client.id
                created = int(time.time())
                data = [
                    {"id": alias, "object": "model", "created": created, "owned_by": "keyway"}
                    for alias in gw.table.aliases
                    if client.may_use(alias)
                ]
                record.status = 200
                await send_bytes(send, 200, _encoder.encode({"object": "list", "data": data}), base)
            finally:
                report_request(record, span, started, scope["headers"])

    return list_models
