"""CORS for browser clients: preflight answers and the allow-origin header, for allowed origins only.

Applied in front of every route (hot paths and Litestar's alike) when `server.cors_origins` is
set (`KEYWAY_CORS_ORIGINS`); with no origins configured no CORS header is ever sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.api.asgi_io import Receive, Scope, Send

__all__ = ["CORSGate"]

_ALLOW_HEADERS = (
    b"authorization, content-type, x-api-key, anthropic-version, anthropic-beta, openai-beta"
)
_ALLOW_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_EXPOSE = b"x-request-id, x-keyway-key, x-keyway-attempts, x-keyway-degraded, retry-after"


class CORSGate:
    def __init__(self, app: Any, origins: Sequence[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").encode() for o in origins if o != "*")

    @property
    def state(self) -> Any:
        return self.app.state

    def _allowed(self, origin: bytes) -> bool:
        return self.any_origin or origin.rstrip(b"/") in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
        if origin is None or not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        allow = b"*" if self.any_origin else origin
        if scope["method"] == "OPTIONS" and any(
            k == b"access-control-request-method" for k, _ in scope["headers"]
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-origin", allow),
                        (b"access-control-allow-methods", _ALLOW_METHODS),
                        (b"access-control-allow-headers", _ALLOW_HEADERS),
                        (b"access-control-max-age", b"600"),
                        (b"vary", b"origin"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", allow),
                    (b"access-control-expose-headers", _EXPOSE),
                    (b"vary", b"origin"),
                ]
            await send(message)

        await self.app(scope, receive, with_cors)
