"""Raw ASGI plumbing for the hot endpoints: read a capped body, send a response, send an error.

The hot endpoints skip Litestar's request/response machinery (measured to cost more than the
routing decision itself); these helpers are all they need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.errors import (
    GatewayError,
    PayloadTooLarge,
    anthropic_error_body,
    openai_error_body,
)

__all__ = [
    "JSON",
    "ClientGone",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "send_bytes",
    "send_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, cap: int, declared: int | None) -> bytes:
    """The whole request body, or PayloadTooLarge as soon as it exceeds `cap` bytes."""
    if declared is not None and declared > cap:
        raise PayloadTooLarge(f"request body is larger than {cap} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(
                    f"request body is larger than {cap} bytes", code="body_too_large"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes = JSON,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(
    send: Send,
    err: GatewayError,
    headers: list[tuple[bytes, bytes]],
    *,
    anthropic: bool = False,
) -> None:
    body = anthropic_error_body(err) if anthropic else openai_error_body(err)
    await send_bytes(send, err.status, body, [*headers, *err.headers()])
