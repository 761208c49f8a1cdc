"""The upstream transport over one shared aiohttp `ClientSession`.

The session is created on first use (aiohttp binds it to the running event loop). It never
decompresses (``auto_decompress=False``), never adds ``accept-encoding`` or ``user-agent``,
keeps no cookies (a cookie set for one upstream key must not ride along with another key's
request) and never follows redirects. ``sock_read`` gives the per-wait read timeout;
``connect`` bounds the wait for a pooled connection plus the TCP/TLS connect. With
``trust_env`` it sends through the egress proxy named by HTTP(S)_PROXY (NO_PROXY honoured): the
gateway picks this transport by itself when those variables are set (`choose_kind`).

DNS answers are kept for `DNS_TTL_S` (30 s). With an `address_policy`, every socket the
connector opens passes through `_socket_factory`, which sees the address it will connect to
(resolved, cached or an IP literal) and refuses it before any connect; behind an egress proxy
that address is the proxy's, and the proxy resolves the upstream's name itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp

from gateway.providers.transport import (
    DNS_TTL_S,
    AddressPolicy,
    AddressRefused,
    ConnectError,
    StreamCut,
    UpstreamTimeoutError,
    fold_headers,
    seconds_left,
)

__all__ = ["AiohttpResponse", "AiohttpTransport"]

_TIMEOUT_CACHE_LIMIT = 256
_KEEPALIVE_S = 30.0


class _RefusedByPolicy(OSError):
    """Raised inside aiohttp's connect; one message for all, so several stay one (not merged)."""


_REFUSED = "refused by the upstream address policy"


def _socket_factory(policy: AddressPolicy) -> Callable[[tuple[object, ...]], socket.socket]:
    """A `socket_factory` for `aiohttp.TCPConnector` that opens no socket to a refused address."""

    def open_socket(addr_info: tuple[object, ...]) -> socket.socket:
        family, type_, proto, _, address = addr_info
        if not isinstance(address, tuple) or policy(str(address[0])) is not None:
            raise _RefusedByPolicy(_REFUSED)
        return socket.socket(family=family, type=type_, proto=proto)  # type: ignore[arg-type]

    return open_socket


class AiohttpResponse:
    """An aiohttp response seen through the `UpstreamResponse` seam."""

    __slots__ = ("_deadline", "_done", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, deadline: float | None) -> None:
        self._response = response
        self._deadline = deadline
        """The exchange's deadline (`send`'s), which `read` keeps unless given its own."""
        self._done = False
        self.status = response.status
        self.headers: Mapping[str, str] = fold_headers(response.headers.items())

    async def read(self, *, deadline: float | None = None) -> bytes:
        left = seconds_left(self._deadline if deadline is None else deadline)
        try:
            async with asyncio.timeout(left):
                body = await self._response.read()
        except TimeoutError as exc:
            self._abandon()
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except aiohttp.ClientError as exc:
            self._abandon()
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        self._finish()
        return body

    async def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                if deadline is None:
                    chunk = await content.readany()
                else:
                    async with asyncio.timeout(seconds_left(deadline)):
                        chunk = await content.readany()
                if not chunk:
                    break
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except aiohttp.ClientError as exc:
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        else:
            self._finish()
        finally:
            self._abandon()

    async def aclose(self) -> None:
        self._abandon()

    def _finish(self) -> None:
        """The body is complete: hand the connection back to the pool for reuse."""
        if not self._done:
            self._done = True
            self._response.release()

    def _abandon(self) -> None:
        """Close the connection unless the body already completed (and it went back to the pool)."""
        if not self._done:
            self._done = True
            self._response.close()


class AiohttpTransport:
    """Sends upstream requests through one aiohttp session with a pool of `max_connections`."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        trust_env: bool = False,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        """`trust_env`: use the HTTP(S)_PROXY / NO_PROXY proxy of the environment (egress proxy).

        `address_policy`: checked on every address before a socket is opened to it.
        """
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._address_policy = address_policy
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

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
    ) -> AiohttpResponse:
        session = self._session or self._open()
        timeout = self._timeout(connect_timeout_s, read_timeout_s)
        try:
            async with asyncio.timeout(seconds_left(deadline)):
                response = await session.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    timeout=timeout,
                    allow_redirects=False,
                )
        except TimeoutError as exc:
            raise UpstreamTimeoutError("upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            if isinstance(getattr(exc, "os_error", None), _RefusedByPolicy):
                raise AddressRefused("upstream address refused by the upstream policy") from exc
            raise ConnectError(f"upstream connection failed ({type(exc).__name__})") from exc
        return AiohttpResponse(response, deadline)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ttl_dns_cache=int(DNS_TTL_S),
            keepalive_timeout=_KEEPALIVE_S,
            socket_factory=(
                None if self._address_policy is None else _socket_factory(self._address_policy)
            ),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=self._trust_env,
        )
        return self._session

    def _timeout(self, connect_s: float, read_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect_s, read_s))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=read_s)
            if len(self._timeouts) < _TIMEOUT_CACHE_LIMIT:
                self._timeouts[(connect_s, read_s)] = timeout
        return timeout
