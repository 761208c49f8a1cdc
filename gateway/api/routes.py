"""The routed API: six POST endpoints of both dialects, each one `RoutedEndpoint`, and the
models (list and one model). Served as raw ASGI handlers mounted in the Litestar app and
dispatched directly by `hot_paths.HotPathDispatcher` (`hot_routes`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send
from gateway.api.endpoint import RoutedEndpoint
from gateway.api.hot_paths import ASGIHandler
from gateway.api.models_route import MODEL_ROUTE, ROUTE, models_handler
from gateway.providers.adapters import Endpoint
from gateway.runtime import Gateway

__all__ = ["ROUTED", "api_handlers", "hot_routes"]

ROUTED: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint.CHAT,
    "/v1/completions": Endpoint.COMPLETIONS,
    "/v1/embeddings": Endpoint.EMBEDDINGS,
    "/v1/responses": Endpoint.RESPONSES,
    "/v1/messages": Endpoint.MESSAGES,
    "/v1/messages/count_tokens": Endpoint.COUNT_TOKENS,
}
"""Path -> the operation it routes."""


def _handler(gw: Gateway, path: str, endpoint: Endpoint) -> Any:
    serve = RoutedEndpoint(gw, endpoint, path)

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send)

    routed.__name__ = "routed_" + endpoint.name.lower()
    return asgi(path, copy_scope=False)(routed)


def api_handlers(gw: Gateway) -> list[Any]:
    """The Litestar route handlers of the API, bound to `gw`."""
    return [*(_handler(gw, path, ep) for path, ep in ROUTED.items()), models_handler(gw)]


def hot_routes(handlers: Iterable[Any]) -> dict[str, ASGIHandler]:
    """Path -> raw handler for the dispatcher: every path of `handlers` (from `api_handlers`),
    and `MODEL_ROUTE`, which only the dispatcher serves (see models_route)."""
    routes: dict[str, ASGIHandler] = {
        path: handler.fn for handler in handlers for path in handler.paths
    }
    routes[MODEL_ROUTE] = routes[ROUTE]
    return routes
