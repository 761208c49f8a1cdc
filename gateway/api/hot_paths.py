"""The hot endpoints served in front of Litestar, as plain ASGI.

Profiles of the request path showed Litestar's per-request machinery (router, exception
middleware, send wrapper) at about a fifth of a worker's CPU, more than the routing decision.
The same handlers stay mounted in the Litestar app (its probes, admin API and OpenAPI docs are
untouched); this dispatcher only lets the hot paths reach them without that layer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.api.asgi_io import Receive, Scope, Send

__all__ = ["ASGIHandler", "HotPathDispatcher"]

log = logging.getLogger("keyway.api")

ASGIHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

_INTERNAL = b'{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}'


class HotPathDispatcher:
    """path -> raw handler for the hot endpoints; everything else goes to the Litestar app."""

    def __init__(self, app: Any, routes: Mapping[str, ASGIHandler]) -> None:
        self.app = app
        self.routes = dict(routes)

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
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
