"""What the `h1` transport writes: the URL split into where and what, and the request bytes.

Both are pure functions: the pool (`h1_transport`) splits each distinct URL once and caches
it, encodes each request into the one write it makes, and the tests check the bytes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple
from urllib.parse import quote, urlsplit

from gateway.providers.transport import ConnectError

__all__ = ["Target", "encode_request", "split_url"]

_FRAMING: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
"""Caller headers the transport owns: dropped, then written by the transport itself."""
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
"""Methods that announce an empty body (``content-length: 0``) when given none."""
_PATH_SAFE: Final = "/%:@!$&'()*+,;="
"""Kept as written in a request target (RFC 3986 pchar; `%` so existing escapes stay)."""


class Target(NamedTuple):
    """An absolute http(s) URL taken apart: the origin, its ``host`` header, the request target."""

    scheme: str
    host: str
    port: int
    host_header: str
    target: str


def split_url(url: str) -> Target:
    """Split `url`; the target is percent-encoded where HTTP requires it (as yarl does).

    Userinfo is dropped (never sent, never named); raises `ConnectError` naming no part of it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
        scheme, host = parts.scheme, parts.hostname
        if host:  # also checks ASCII labels (empty, too long) before the resolver does
            host = host.encode("idna").decode("ascii")
    except ValueError as exc:  # UnicodeError (IDNA) is a ValueError
        raise ConnectError("upstream URL is invalid") from exc
    if scheme not in ("http", "https") or not host:
        raise ConnectError("upstream URL is not an absolute http(s) URL")
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target = f"{target}?{quote(parts.query, safe=_PATH_SAFE + '?')}"
    return Target(scheme, host, port, host_header, target)


def encode_request(
    method: str,
    target: str,
    host_header: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
) -> bytes:
    """The request as one bytes object: request line, host, headers, framing, body.

    Header values are encoded as latin-1 (the inverse of how the gateway decoded the client's),
    UTF-8 only if that fails. A CR or LF inside the method, target, a name or a value would
    split the head (request smuggling), so it is refused with ValueError, naming no value.
    """
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host_header}\r\n"]
    for name, value in headers:
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}\r\n")
    breaks = len(lines) + 3  # two after the request line and host, one per header, two to end
    if body is not None:
        lines.append(f"content-length: {len(body)}\r\n\r\n")
    elif method in _BODY_METHODS:
        lines.append("content-length: 0\r\n\r\n")
    else:
        lines.append("\r\n")
        breaks -= 1
    head = "".join(lines)
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ValueError("CR or LF inside the request line or a header field")
    try:
        encoded = head.encode("latin-1")
    except UnicodeEncodeError:
        encoded = head.encode("utf-8")
    return encoded + body if body else encoded
