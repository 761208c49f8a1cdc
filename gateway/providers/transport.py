"""The seam between the gateway and the HTTP client that talks to upstream providers.

Everything that leaves the gateway for a provider goes through `UpstreamTransport.send`, so the
HTTP client library is one choice made in one place (`create_transport`). Four implementations
exist (`aiohttp`, `pyreqwest`, `httpx`, and `h1`: Keyway's own HTTP/1.1 client on
asyncio.Protocol and httptools); `loadtests/upstream_clients.py` measures them and
`DEFAULT_KIND` names the fastest one that passes `tests/unit/test_transport.py`.

Exception tree (every library error is translated into one of these)::

    TransportError               base; the message never holds a header, a URL or a secret
     ├── ConnectError            no response: refused, reset or closed before the status line
     ├── UpstreamTimeoutError    connect, pool or read timeout (before headers or between chunks)
     └── StreamCut               the connection dropped after the headers, mid-body

The original library exception is chained as ``__cause__`` for debugging; it may name the URL
(never the headers).

Contract shared by every implementation:

- Bytes pass through untouched. A transport never adds ``accept-encoding`` and never decodes a
  body: what the provider sent is what `read` / `iter_bytes` return, and ``content-encoding``
  stays in `UpstreamResponse.headers`. A caller that parses bodies sends
  ``accept-encoding: identity`` (or no ``accept-encoding``); one that relays bytes to its client
  must forward ``content-encoding`` with them.
- The caller passes end-to-end headers only; the transport sets ``host`` and the framing
  (``content-length``). Redirects are never followed.
- ``read_timeout_s`` bounds each wait for data (the headers, then every body chunk), not the
  whole exchange; an overall deadline is the caller's (``asyncio.timeout`` around the attempt).
  Timeouts are per-deployment settings, not per-request computed values: the pyreqwest
  implementation keeps one client, with its own pool, per distinct timeout pair.
- Response header names are lower-cased; repeated fields are joined with ``", "``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Final, Protocol

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "PROXY_VARIABLES",
    "ConnectError",
    "StreamCut",
    "TransportError",
    "UpstreamResponse",
    "UpstreamTimeoutError",
    "UpstreamTransport",
    "choose_kind",
    "create_transport",
    "fold_headers",
    "proxy_configured",
]

KINDS: Final = ("aiohttp", "pyreqwest", "httpx", "h1")
"""Transport implementations `create_transport` knows, by name."""

DEFAULT_KIND: Final = "h1"
"""Chosen by measurement: h1 beat aiohttp on every route (loadtests/results/upstream_clients.md)."""


class TransportError(Exception):
    """An upstream exchange failed below HTTP; the message never holds headers or secrets."""


class ConnectError(TransportError):
    """No response: the connection was refused, reset or closed before the status line."""


class UpstreamTimeoutError(TransportError):
    """A connect, pool or read timeout elapsed (before the headers or between body chunks)."""


class StreamCut(TransportError):
    """The connection dropped after the headers arrived, before the body was complete."""


class UpstreamResponse(Protocol):
    """A provider's response whose status and headers have arrived; the body may still be coming."""

    status: int
    headers: Mapping[str, str]
    """Lower-cased names; repeated fields joined with ", "."""

    async def read(self) -> bytes:
        """Return the whole body, then release the connection."""
        ...

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Yield body chunks as they arrive, without re-chunking; release the connection at the end."""
        ...

    async def aclose(self) -> None:
        """Release the connection; an unfinished body is abandoned (the connection is closed)."""
        ...


class UpstreamTransport(Protocol):
    """Sends one HTTP request to a provider over a shared connection pool."""

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> UpstreamResponse:
        """Send the request and return once the status line and headers have arrived.

        Raises `ConnectError` or `UpstreamTimeoutError`.
        """
        ...

    async def aclose(self) -> None:
        """Close every pooled connection; calling it again does nothing."""
        ...


def fold_headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names and join repeated fields with ", " (RFC 9110, section 5.3)."""
    folded: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        previous = folded.get(key)
        folded[key] = value if previous is None else f"{previous}, {value}"
    return folded


PROXY_VARIABLES: Final = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
"""Egress proxy settings in the environment; `h1` does not speak to proxies, aiohttp does."""


def proxy_configured(env: Mapping[str, str]) -> bool:
    """Whether the environment names an HTTP(S) proxy for upstream calls."""
    return any(env.get(name) for name in PROXY_VARIABLES)


def choose_kind(env: Mapping[str, str]) -> str:
    """`KEYWAY_UPSTREAM_CLIENT`, else `DEFAULT_KIND`, else aiohttp when a proxy must be used."""
    chosen = env.get("KEYWAY_UPSTREAM_CLIENT")
    if chosen:
        return chosen
    return "aiohttp" if proxy_configured(env) else DEFAULT_KIND


def create_transport(
    kind: str = DEFAULT_KIND, *, max_connections: int = 1000, trust_env: bool = False
) -> UpstreamTransport:
    """Build the transport named `kind` with a pool of at most `max_connections` connections.

    `trust_env` (aiohttp only): take the proxy from HTTP(S)_PROXY / NO_PROXY.
    """
    if kind == "aiohttp":
        from gateway.providers.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(max_connections=max_connections, trust_env=trust_env)
    if kind == "pyreqwest":
        from gateway.providers.pyreqwest_transport import PyreqwestTransport

        return PyreqwestTransport(max_connections=max_connections)
    if kind == "httpx":
        from gateway.providers.httpx_transport import HttpxTransport

        return HttpxTransport(max_connections=max_connections)
    if kind == "h1":
        from gateway.providers.h1_transport import H1Transport

        return H1Transport(max_connections=max_connections)
    raise ValueError(f"unknown upstream transport {kind!r}; expected one of {', '.join(KINDS)}")
