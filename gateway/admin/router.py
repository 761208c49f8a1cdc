"""The admin API under /admin: authentication, security headers, size limit, error bodies.

Every route needs an admin key (see `gateway.admin.auth`), checked by `admin_gate` from the
headers alone, before a byte of the body is read or parsed. Errors are JSON
``{"status_code": ..., "detail": ...}`` with 400 for bad input, 403 for what the admin API may
not do, 404 for an unknown object, 409 for a conflict (exists, in use, changed concurrently),
503 when Redis cannot answer: never a 500 for anything a caller sends. The OpenAPI document is
served under /docs (see gateway.apidocs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin.auth import AdminAuth, Verdict, audit, client_address, presented_key
from gateway.admin.clients import ClientsController
from gateway.admin.context import ADMIN_ACTOR, ADMIN_REMOTE, AdminContext
from gateway.admin.models import ModelsController
from gateway.admin.providers import KeysController, ProvidersController
from gateway.admin.usage import StatusController, UsageController
from gateway.config_load import ConfigError
from gateway.control.editor import ConfigEditor, EditError
from gateway.state.store import StateError
from gateway.telemetry.log_safety import text_field

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = [
    "ADMIN_ACTOR",
    "ADMIN_MAX_BODY_BYTES",
    "ADMIN_MAX_JSON_DEPTH",
    "ADMIN_REMOTE",
    "admin_gate",
    "admin_router",
    "json_too_deep",
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


async def _refuse(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = _encoder.encode({"status_code": status, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body, "more_body": False})


_BEARER = ((b"www-authenticate", b"Bearer"),)


def _request_head(scope: Scope, hops: int) -> tuple[str | None, str]:
    """The admin key presented and the client's address, from the headers alone."""
    auth: dict[str, str] = {}
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name in (b"authorization", b"x-api-key"):
            auth.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        elif name == b"x-forwarded-for" and hops:
            forwarded.append(value.decode("latin-1"))
    client = scope.get("client")
    return presented_key(auth), client_address(client[0] if client else None, forwarded, hops)


def _audit_failure(verdict: Verdict, remote: str, path: str) -> None:
    shown = text_field(path)  # decoded: a %0a in the path must not start a line of its own
    if verdict.status == 429:
        audit.warning(
            "admin auth refused: too many failures from %s on %s",
            remote,
            shown,
            extra={"event": "admin_auth_rate_limited", "remote": remote, "path": shown},
        )
        return
    audit.warning(
        "admin auth failed: %s from %s on %s",
        verdict.reason,
        remote,
        shown,
        extra={"event": "admin_auth_failed", "reason": verdict.reason, "remote": remote,
               "path": shown},
    )  # fmt: skip


async def _refuse_verdict(send: Send, verdict: Verdict) -> None:
    if verdict.status == 429:
        retry = ((b"retry-after", str(verdict.retry_after_s).encode()),)
        await _refuse(send, 429, "too many failed admin authentications; retry later", retry)
    elif verdict.status == 403:
        await _refuse(send, 403, "a client key cannot use the admin API")
    elif verdict.reason == "no key":
        await _refuse(
            send, 401, "missing admin key: send 'Authorization: Bearer <admin key>'", _BEARER
        )
    else:
        await _refuse(send, 401, "invalid admin key", _BEARER)


def admin_gate(gw: Gateway, auth: AdminAuth) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware in front of every admin route, before Litestar reads the request:

    1. security headers on every answer;
    2. the admin key, from the headers alone (`AdminAuth.authenticate`): nothing of the body of
       an unauthenticated request is read;
    3. for a body, its size and JSON nesting, before Litestar parses it (msgspec's own nesting
       limit surfaces as a RecursionError).
    """

    def is_client_key(presented: str) -> bool:
        return gw.clients.lookup(presented) is not None

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers") or [])
                    present = {name.lower() for name, _ in headers}
                    headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                    message["headers"] = headers
                await send(message)

            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send_with_headers)
                return
            if not auth.enabled:
                detail = "the admin API is disabled: set KEYWAY_ADMIN_KEYS to enable it"
                await _refuse(send_with_headers, 404, detail)
                return
            presented, remote = _request_head(scope, auth.trusted_proxy_hops)
            verdict = auth.authenticate(presented, remote, is_client_key)
            if verdict.status:
                _audit_failure(verdict, remote, scope["path"])
                await _refuse_verdict(send_with_headers, verdict)
                return
            state = scope.setdefault("state", {})
            state[ADMIN_ACTOR] = verdict.actor
            state[ADMIN_REMOTE] = remote
            if scope.get("method") not in ("POST", "PUT", "PATCH"):
                await app(scope, receive, send_with_headers)
                return
            await _checked_body(app, scope, receive, send_with_headers)

        return middleware

    return wrap


async def _checked_body(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body within `ADMIN_MAX_BODY_BYTES`, check its nesting, then replay it to `app`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > ADMIN_MAX_BODY_BYTES:
            await _refuse(send, 413, "the request body is too large")
            return
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if json_too_deep(body):
        await _refuse(send, 400, "the JSON body is nested too deeply")
        return
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    await app(scope, replay, send)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _edit_error(_: Request[Any, Any, Any], exc: EditError) -> Response[Any]:
    return _error(exc.status, exc.message)


def _too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec refuses JSON nested deeper than it can decode; Litestar lets that escape as is
    return _error(400, "the JSON body is nested too deeply")


def _state_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(503, "shared state (Redis) is unavailable; retry shortly", {"retry-after": "1"})


def admin_router(gw: Gateway) -> Router:
    """The /admin routes bound to `gw` (they answer 404 while KEYWAY_ADMIN_KEYS is unset)."""
    auth = AdminAuth.from_env(gw.control.env, gw.cfg.server.trusted_proxy_hops)
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
        dependencies={"admin": Provide(provide_admin, sync_to_thread=False)},
        middleware=[admin_gate(gw, auth)],
        exception_handlers={
            EditError: _edit_error,
            StateError: _state_error,
            ConfigError: _state_error,
            RecursionError: _too_deep,
        },
        request_max_body_size=ADMIN_MAX_BODY_BYTES,
        security=[{"AdminKey": []}],
    )
