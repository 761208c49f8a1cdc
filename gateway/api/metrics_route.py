"""GET /metrics: the Prometheus exposition of every worker's metrics, summed.

A raw ASGI handler like the other hot endpoints. In multiprocess mode rendering reads every
worker's memory-mapped files, so it runs in a thread to keep the event loop serving requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send, send_bytes
from gateway.telemetry.metrics import CONTENT_TYPE, get_metrics, render

__all__ = ["metrics_handler"]

_CONTENT_TYPE = CONTENT_TYPE.encode()


def metrics_handler() -> Any:
    """The `/metrics` route handler; creates this worker's metrics so every family shows."""
    get_metrics()

    @asgi("/metrics", copy_scope=False)
    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_bytes(send, 405, b"use GET\n", [(b"allow", b"GET, HEAD")], b"text/plain")
            return
        body = await asyncio.to_thread(render)
        if scope["method"] == "HEAD":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", _CONTENT_TYPE),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send_bytes(send, 200, body, [(b"cache-control", b"no-store")], _CONTENT_TYPE)

    return metrics
