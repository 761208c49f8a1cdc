"""Probes: /livez (the process answers) and /readyz (Redis reachable, scripts loaded, not draining)."""

from __future__ import annotations

from typing import Any

from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send, send_bytes
from gateway.runtime import Gateway

__all__ = ["health_handlers"]


def health_handlers(gw: Gateway) -> list[Any]:
    @asgi("/livez", copy_scope=False)
    async def livez(scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}', [])

    @asgi("/readyz", copy_scope=False)
    async def readyz(scope: Scope, receive: Receive, send: Send) -> None:
        if await gw.ready():
            if gw.degraded_mode:
                body = b'{"status":"degraded","redis":"unreachable"}'
                await send_bytes(send, 200, body, [(b"x-keyway-degraded", b"redis-unavailable")])
            else:
                await send_bytes(send, 200, b'{"status":"ready"}', [])
        elif gw.shutting_down:
            await send_bytes(send, 503, b'{"status":"shutting down"}', [])
        else:
            await send_bytes(send, 503, b'{"status":"shared state unavailable"}', [])

    return [livez, readyz]
