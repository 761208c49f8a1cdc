"""What every API request starts with: its id, the headers Keyway reads, the client it comes from."""

from __future__ import annotations

import os

from gateway.api.asgi_io import Scope
from gateway.clients import Client
from gateway.errors import Unauthorized
from gateway.providers.adapters import FORWARDED_CLIENT_HEADERS
from gateway.runtime import Gateway

__all__ = ["RequestHeaders", "authenticate", "new_request_id"]


def new_request_id() -> str:
    return os.urandom(12).hex()


class RequestHeaders:
    """The request headers Keyway looks at, collected in one pass over the scope."""

    __slots__ = ("api_key", "content_length", "forwarded")

    def __init__(self, scope: Scope) -> None:
        self.api_key: str | None = None
        self.content_length: int | None = None
        self.forwarded: list[tuple[str, str]] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name == "authorization":
                value = raw_value.decode("latin-1").strip()
                scheme, _, rest = value.partition(" ")
                self.api_key = rest.strip() if scheme.lower() == "bearer" and rest else value
            elif name == "x-api-key":
                self.api_key = self.api_key or raw_value.decode("latin-1").strip()
            elif name == "content-length":
                try:
                    self.content_length = int(raw_value)
                except ValueError:
                    self.content_length = None
            elif name in FORWARDED_CLIENT_HEADERS:
                self.forwarded.append((name, raw_value.decode("latin-1")))


def authenticate(gw: Gateway, headers: RequestHeaders) -> Client:
    """The client a key belongs to: a local lookup of its HMAC digest, no Redis call."""
    if not headers.api_key:
        raise Unauthorized(
            "missing client key: send 'Authorization: Bearer <key>' or 'x-api-key'",
            code="missing_api_key",
        )
    client = gw.clients.lookup(headers.api_key)
    if client is None:
        raise Unauthorized("invalid client key", code="invalid_api_key")
    return client
