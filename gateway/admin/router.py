"""The admin API under /admin: authentication, security headers, size limit, error bodies.

Every route needs an admin key (see `gateway.admin.auth`); errors are JSON
``{"status_code": ..., "detail": ...}`` with 400 for bad input, 404 for an unknown object, 409
for a conflict (exists, in use, changed concurrently), 503 when Redis cannot answer: never a 500
for anything a caller sends. The OpenAPI document is served at /docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway import __version__
from gateway.admin.auth import AdminAuth, audit, presented_key
from gateway.admin.clients import ClientsController
from gateway.admin.context import AdminContext
from gateway.admin.models import ModelsController
from gateway.admin.providers import KeysController, ProvidersController
from gateway.admin.usage import StatusController, UsageController
from gateway.config_load import ConfigError
from gateway.control.editor import ConfigEditor, EditError
from gateway.state.store import StateError

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["ADMIN_MAX_BODY_BYTES", "admin_router", "openapi_config", "security_headers"]

ADMIN_MAX_BODY_BYTES = 64 * 1024

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: no caching, no sniffing, no framing of admin responses."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _edit_error(_: Request[Any, Any, Any], exc: EditError) -> Response[Any]:
    return _error(exc.status, exc.message)


def _state_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(503, "shared state (Redis) is unavailable; retry shortly", {"retry-after": "1"})


def _guard_for(gw: Gateway, auth: AdminAuth) -> Any:
    def refuse(remote: str, path: str, reason: str) -> None:
        auth.limiter.fail(remote)
        audit.warning(
            "admin auth failed: %s from %s on %s",
            reason,
            remote,
            path,
            extra={"event": "admin_auth_failed", "reason": reason, "remote": remote, "path": path},
        )

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not auth.enabled:
            raise NotFoundException("the admin API is disabled: set KEYWAY_ADMIN_KEYS to enable it")
        remote = connection.client.host if connection.client else "-"
        path = connection.url.path
        wait = auth.limiter.retry_after_s(remote)
        if wait:
            audit.warning(
                "admin auth refused: too many failures from %s",
                remote,
                extra={"event": "admin_auth_rate_limited", "remote": remote, "path": path},
            )
            raise TooManyRequestsException(
                "too many failed admin authentications; retry later",
                headers={"retry-after": str(wait)},
            )
        presented = presented_key(connection.headers)
        if presented is None:
            refuse(remote, path, "no key")
            raise NotAuthorizedException(
                "missing admin key: send 'Authorization: Bearer <admin key>'",
                headers={"www-authenticate": "Bearer"},
            )
        actor = auth.identify(presented)
        if actor is not None:
            connection.state.admin_actor = actor
            return
        if gw.clients.lookup(presented) is not None:
            refuse(remote, path, "client key")
            raise PermissionDeniedException("a client key cannot use the admin API")
        refuse(remote, path, "unknown key")
        raise NotAuthorizedException("invalid admin key", headers={"www-authenticate": "Bearer"})

    return guard


def admin_router(gw: Gateway) -> Router:
    """The /admin routes bound to `gw` (they answer 404 while KEYWAY_ADMIN_KEYS is unset)."""
    auth = AdminAuth.from_env(gw.control.env)
    context = AdminContext(gw=gw, sync=gw.control, editor=ConfigEditor(gw.control), auth=auth)

    def provide_admin() -> AdminContext:
        return context

    return Router(
        path="/admin",
        route_handlers=[
            ProvidersController,
            KeysController,
            ModelsController,
            ClientsController,
            UsageController,
            StatusController,
        ],
        guards=[_guard_for(gw, auth)],
        dependencies={"admin": Provide(provide_admin, sync_to_thread=False)},
        middleware=[security_headers],
        exception_handlers={
            EditError: _edit_error,
            StateError: _state_error,
            ConfigError: _state_error,
        },
        request_max_body_size=ADMIN_MAX_BODY_BYTES,
        security=[{"AdminKey": []}],
    )


def openapi_config() -> OpenAPIConfig:
    """OpenAPI at /docs (the document at /docs/openapi.json)."""
    return OpenAPIConfig(
        title="Keyway",
        version=__version__,
        path="/docs",
        description="Keyway's admin API. Every /admin route needs an admin key "
        "(KEYWAY_ADMIN_KEYS) as 'Authorization: Bearer <key>'.",
        components=Components(
            security_schemes={"AdminKey": SecurityScheme(type="http", scheme="bearer")}
        ),
    )
