"""The raw ASGI plumbing of the fake provider: types, body reading and response sending.

No framework on purpose: the fake provider is the baseline of the load tests, so a request
costs a dict lookup, one decode and one encode, and constant bytes are encoded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

__all__ = [
    "JSON_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "ASGIApp",
    "ConnectionCut",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "send_body",
    "send_cut_body",
    "send_events",
    "wait_for_disconnect",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_NO_CACHE = (b"cache-control", b"no-cache")


class ConnectionCut(Exception):
    """Raised on purpose mid-response so that the server drops the connection (fault "cut")."""


async def read_body(receive: Receive, content_length: int = -1) -> bytes:
    """The whole request body (requests to an LLM API are small).

    Granian sends a body as a message with ``more_body`` followed by an empty last one; once
    ``content_length`` bytes are in, waiting for that last message would only cost a loop turn.
    """
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) or len(body) == content_length:
        return body
    parts = [body]
    received = len(body)
    while message.get("more_body", False) and received != content_length:
        message = await receive()
        part = message.get("body", b"")
        parts.append(part)
        received += len(part)
    return b"".join(parts)


async def wait_for_disconnect(receive: Receive) -> None:
    """Block until the client goes away (fault "hang": never answer)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def send_body(send: Send, status: int, headers: Headers, body: bytes) -> None:
    """Send a complete response with a Content-Length."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_cut_body(send: Send, status: int, headers: Headers, body: bytes) -> None:
    """Promise the whole body, send half of it, then drop the connection."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise ConnectionCut("fault 'cut': connection dropped before the end of the body")


async def send_events(
    send: Send,
    receive: Receive,
    headers: Headers,
    events: Sequence[bytes],
    delay_s: float,
    cut: bool = False,
) -> None:
    """Stream Server-Sent Events, one ASGI body message each, ``delay_s`` apart.

    With ``cut``, only the first half of the events is sent before the connection is dropped,
    so the client never sees the event that ends the stream. A paced stream stops as soon as
    its client has gone, so that the in-flight count follows what the client sees.
    """
    headers.append(SSE_CONTENT_TYPE)
    headers.append(_NO_CACHE)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    count = max(1, len(events) // 2) if cut else len(events)
    gone = asyncio.ensure_future(wait_for_disconnect(receive)) if delay_s else None
    try:
        for index in range(count):
            if gone is not None and index:
                await asyncio.sleep(delay_s)
                if gone.done():
                    return
            await send({"type": "http.response.body", "body": events[index], "more_body": True})
    finally:
        if gone is not None:
            gone.cancel()
    if cut:
        raise ConnectionCut("fault 'cut': connection dropped before the end of the stream")
    await send({"type": "http.response.body", "body": b"", "more_body": False})
