"""The seam between the gateway and the HTTP client that talks to upstream providers.

Everything that leaves the gateway for a provider goes through `UpstreamTransport.send`, so the
HTTP client library is one choice made in one place (`create_transport`). Four implementations
exist (`aiohttp`, `pyreqwest`, `httpx`, and `h1`: Keyway's own HTTP/1.1 client on
asyncio.Protocol and httptools); `loadtests/upstream_clients.py` measures them and
`DEFAULT_KIND` names the fastest one that passes `tests/unit/test_transport.py`.

Exception tree (every library error is translated into one of these)::

    TransportError               base; the message never holds a header, a URL or a secret
     ├── ConnectError            no response: refused, reset or closed before the status line
     │    └── AddressRefused     the host resolved to an address the `AddressPolicy` refuses:
     │                           no connection was opened
     ├── UpstreamTimeoutError    connect or read timeout, or the exchange's deadline passed
     ├── StreamCut               the connection dropped after the headers, mid-body
     └── PoolExhausted           no connection of the transport's own pool came free in time:
                                 the gateway's capacity, nothing was sent (no key is to blame)

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
- ``read_timeout_s`` bounds each wait for data (the headers, then every body chunk), so bytes
  trickled just often enough never end it; ``deadline`` (an absolute `time.monotonic` time,
  optional) bounds the whole exchange whatever arrives: `send` (pool wait, connect, write,
  head), then `read`, which keeps the deadline given to `send` unless given its own.
  `iter_bytes` is bounded only by a ``deadline`` passed to it: a stream's length is the
  caller's to bound (``routing.max_stream_s``); the per-chunk read timeout still applies.
  A passed deadline raises `UpstreamTimeoutError`. Timeouts are per-deployment settings, not
  per-request computed values: the pyreqwest implementation keeps one client, with its own
  pool, per distinct timeout pair (a deadline is applied around its calls instead).
- Waiting for a free connection of the transport's own pool is not an upstream failure: when
  that wait (within ``connect_timeout_s`` and the deadline) runs out, `PoolExhausted` is raised
  where the client library tells it apart (h1, httpx, pyreqwest; aiohttp reports a connect
  timeout).
- Response header names are lower-cased; repeated fields are joined with ``", "``.
- Given an `AddressPolicy`, a transport checks every address it is about to connect to, after
  DNS and for IP literals alike, and connects to none the policy refuses (`AddressRefused` when
  none is left). A DNS answer is kept at most 30 s (getaddrinfo gives no TTL).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol, TypeAlias

__all__ = [
    "DEFAULT_KIND",
    "DNS_TTL_S",
    "KINDS",
    "PROXY_VARIABLES",
    "AddressPolicy",
    "AddressRefused",
    "ConnectError",
    "PoolExhausted",
    "StreamCut",
    "TransportError",
    "UpstreamResponse",
    "UpstreamTimeoutError",
    "UpstreamTransport",
    "choose_kind",
    "create_transport",
    "fold_headers",
    "proxy_configured",
    "seconds_left",
]

KINDS: Final = ("aiohttp", "pyreqwest", "httpx", "h1")
"""Transport implementations `create_transport` knows, by name."""

DEFAULT_KIND: Final = "h1"
"""Chosen by measurement: h1 beat aiohttp on every route (loadtests/results/upstream_clients.md)."""


class TransportError(Exception):
    """An upstream exchange failed below HTTP; the message never holds headers or secrets."""


class ConnectError(TransportError):
    """No response: the connection was refused, reset or closed before the status line."""


class AddressRefused(ConnectError):
    """Every address the upstream host resolved to is refused by the policy; nothing connected."""


AddressPolicy: TypeAlias = Callable[[str], str | None]
"""Why a resolved IP address must not be connected to ("a link-local address"), or None.

Built from the config once (`gateway.control.url_policy.address_policy`) and given to the
transport when it is created; called for every new connection, so it must be cheap.
"""

DNS_TTL_S: Final = 30.0
"""The longest a transport keeps a DNS answer: getaddrinfo does not report the record's TTL."""


class UpstreamTimeoutError(TransportError):
    """A connect or read timeout elapsed, or the exchange's deadline passed."""


class StreamCut(TransportError):
    """The connection dropped after the headers arrived, before the body was complete."""


class PoolExhausted(TransportError):
    """No connection of the transport's own pool came free in time; nothing was sent upstream.

    The gateway's capacity, not the provider's: the caller answers 503 and blames no key.
    """


class UpstreamResponse(Protocol):
    """A provider's response whose status and headers have arrived; the body may still be coming."""

    status: int
    headers: Mapping[str, str]
    """Lower-cased names; repeated fields joined with ", "."""

    async def read(self, *, deadline: float | None = None) -> bytes:
        """Return the whole body, then release the connection.

        Bounded by `deadline` (`time.monotonic`), else by the deadline given to `send`.
        """
        ...

    def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        """Yield body chunks as they arrive, without re-chunking; release the connection at the end.

        Bounded by `deadline` (`time.monotonic`) only, not by the deadline given to `send`.
        """
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
        deadline: float | None = None,
    ) -> UpstreamResponse:
        """Send the request and return once the status line and headers have arrived.

        `deadline` (`time.monotonic`, optional) bounds this call and then `read`.
        Raises `ConnectError`, `UpstreamTimeoutError` or `PoolExhausted`.
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


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (`time.monotonic`), at least 0; None when there is none."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.0)


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
    kind: str = DEFAULT_KIND,
    *,
    max_connections: int = 1000,
    trust_env: bool = False,
    address_policy: AddressPolicy | None = None,
) -> UpstreamTransport:
    """Build the transport named `kind` with a pool of at most `max_connections` connections.

    `trust_env` (aiohttp only): take the proxy from HTTP(S)_PROXY / NO_PROXY.
    `address_policy` (h1 and aiohttp): checked on every address before it is connected to;
    the other kinds cannot check it, so asking them to is a `ValueError` (fail closed).
    """
    if address_policy is not None and kind not in ("h1", "aiohttp"):
        raise ValueError(
            f"the {kind} upstream client cannot check upstream addresses when it connects; "
            "use h1 or aiohttp, or allow private upstreams (KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1)"
        )
    if kind == "aiohttp":
        from gateway.providers.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(
            max_connections=max_connections, trust_env=trust_env, address_policy=address_policy
        )
    if kind == "pyreqwest":
        from gateway.providers.pyreqwest_transport import PyreqwestTransport

        return PyreqwestTransport(max_connections=max_connections)
    if kind == "httpx":
        from gateway.providers.httpx_transport import HttpxTransport

        return HttpxTransport(max_connections=max_connections)
    if kind == "h1":
        from gateway.providers.h1_transport import H1Transport

        return H1Transport(max_connections=max_connections, address_policy=address_policy)
    raise ValueError(f"unknown upstream transport {kind!r}; expected one of {', '.join(KINDS)}")
