"""The admin API under /admin: authentication, security headers, size limit, error bodies.

Every route needs an admin key (see `gateway.admin.auth`); errors are JSON
``{"status_code": ..., "detail": ...}`` with 400 for bad input, 404 for an unknown object, 409
for a conflict (exists, in use, changed concurrently), 503 when Redis cannot answer: never a 500
for anything a caller sends. The OpenAPI document is served under /docs
(see gateway.apidocs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

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

__all__ = [
    "ADMIN_MAX_BODY_BYTES",
    "ADMIN_MAX_JSON_DEPTH",
    "admin_router",
    "json_too_deep",
    "security_headers",
]

ADMIN_MAX_BODY_BYTES = 64 * 1024
ADMIN_MAX_JSON_DEPTH = 32
_encoder = msgspec.json.Encoder()

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


def json_too_deep(body: bytes, limit: int = ADMIN_MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects nest deeper than `limit` (strings are skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = _encoder.encode({"status_code": status, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body, "more_body": False})


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: security headers on every admin response; body size and depth checked
    before Litestar parses the body (msgspec's own nesting limit surfaces as a RecursionError)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        if scope["type"] != ScopeType.HTTP or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await app(scope, receive, send_with_headers)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Any = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > ADMIN_MAX_BODY_BYTES:
                await _refuse(send_with_headers, 413, "the request body is too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_too_deep(body):
            await _refuse(send_with_headers, 400, "the JSON body is nested too deeply")
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send_with_headers)

    return middleware


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _edit_error(_: Request[Any, Any, Any], exc: EditError) -> Response[Any]:
    return _error(exc.status, exc.message)


def _too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec refuses JSON nested deeper than it can decode; Litestar lets that escape as is
    return _error(400, "the JSON body is nested too deeply")


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
            RecursionError: _too_deep,
        },
        request_max_body_size=ADMIN_MAX_BODY_BYTES,
        security=[{"AdminKey": []}],
    )
