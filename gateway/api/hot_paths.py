"""The hot endpoints served in front of Litestar, as plain ASGI.

Profiles of the request path showed Litestar's per-request machinery (router, exception
middleware, send wrapper) at about a fifth of a worker's CPU, more than the routing decision.
The same handlers stay mounted in the Litestar app (its probes, admin API and OpenAPI docs are
untouched); this dispatcher only lets the hot paths reach them without that layer.

A path neither hot nor Litestar's (a typo, or an endpoint Keyway does not serve such as
`/v1/batches`) is answered here with a 404 in the caller's dialect, as api.openai.com and
api.anthropic.com answer it, so an SDK raises its NotFoundError with a readable body instead of
parsing Litestar's `{"status_code", "detail"}`. That decision is taken only on a miss, so it costs
the hot paths nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.api.asgi_io import Receive, Scope, Send, send_error
from gateway.api.request_context import new_request_id
from gateway.api.request_report import method_label, report_request
from gateway.errors import NotFound
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord

__all__ = ["UNKNOWN_ROUTE", "ASGIHandler", "HotPathDispatcher", "unknown_url"]

log = logging.getLogger("keyway.api")

ASGIHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

_INTERNAL = b'{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}'
UNKNOWN_ROUTE = "unknown"
"""The route label of requests to paths nothing serves: never the path itself (label sets stay
bounded whatever clients send)."""
_SHOWN_PATH = 200
"""At most this much of an unknown path is echoed in the 404 message."""


def _head(path: str) -> str:
    """The first segment of `path`: "admin" for /admin/clients, "" for /."""
    return path.split("/", 2)[1] if path.startswith("/") else ""


def unknown_url(scope: Scope) -> tuple[NotFound, bool]:
    """The 404 for a path nothing serves, and whether it goes out in Anthropic's shape.

    Anthropic's shape for /v1/messages... (the Anthropic SDK's batches, for one) and for any
    request carrying `anthropic-version`, which the Anthropic SDK always sends; OpenAI's
    otherwise, with the message and code api.openai.com gives.
    """
    path = scope["path"]
    shown = path if len(path) <= _SHOWN_PATH else path[:_SHOWN_PATH] + "..."
    err = NotFound(f"Invalid URL ({scope['method']} {shown})", code="unknown_url")
    anthropic = path.startswith("/v1/messages") or any(
        name == b"anthropic-version" for name, _ in scope["headers"]
    )
    return err, anthropic


async def _answer_unknown(scope: Scope, send: Send) -> None:
    """The dialect's 404, counted, traced and access-logged like any API request."""
    started = time.perf_counter()
    method = method_label(scope["method"])
    record = AccessRecord(
        request_id=new_request_id(),
        route=UNKNOWN_ROUTE,
        status=404,
        latency_ms=0,
        method=method,
        error="unknown_url",
    )
    with tracing.server_span(scope["headers"], UNKNOWN_ROUTE, method) as span:
        try:
            err, anthropic = unknown_url(scope)
            headers = [(b"x-request-id", record.request_id.encode())]
            await send_error(send, err, headers, anthropic=anthropic)
        finally:
            report_request(record, span, started, scope["headers"])


class HotPathDispatcher:
    """path -> raw handler for the hot endpoints; Litestar's own paths go to the Litestar app.

    A route whose key holds a parameter (`/v1/models/{model_id:path}`) serves every path under
    the text before it (`/v1/models/`), looked at only when no exact path matched; the handler
    reads the rest from `scope["path"]`. Litestar's paths are known by their first segment
    (`admin`, `docs`, `metrics`, `livez`, ...), read from `app.routes` once; a hot path with a
    trailing slash also goes to Litestar, which routes it to the same handler as before.
    Anything else gets the dialect's 404.
    """

    def __init__(self, app: Any, routes: Mapping[str, ASGIHandler]) -> None:
        self.app = app
        self.routes = {path: fn for path, fn in routes.items() if "{" not in path}
        self.prefixes = tuple(
            (path[: path.index("{")], fn) for path, fn in routes.items() if "{" in path
        )
        self.litestar_heads = frozenset(
            _head(route.path) for route in getattr(app, "routes", ()) if route.path not in routes
        )

    @property
    def state(self) -> Any:
        return self.app.state

    def _litestar_serves(self, path: str) -> bool:
        return _head(path) in self.litestar_heads or path.rstrip("/") in self.routes

    def _by_prefix(self, path: str) -> ASGIHandler | None:
        for prefix, handler in self.prefixes:
            if path.startswith(prefix):
                return handler
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None and scope["type"] == "http":
            handler = self._by_prefix(scope["path"])
        if handler is None:
            if scope["type"] == "http" and not self._litestar_serves(scope["path"]):
                await _answer_unknown(scope, send)
                return
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await handler(scope, receive, tracking_send)
        except Exception:
            # a bug, never the client's input: log it, answer 500 if nothing was sent yet
            log.exception("unhandled error on %s", scope["path"])
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL})
