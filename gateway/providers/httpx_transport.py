"""The upstream transport over an httpx transport (a pooled `AsyncHTTPTransport` or a test double).

It drives `httpx.AsyncBaseTransport.handle_async_request` directly, below `httpx.AsyncClient`:
no default headers (so no ``accept-encoding``), no cookies, no redirects, no auth hooks, and
the body is read from the raw stream, so nothing is decoded. Timeouts travel per request in
the ``timeout`` extension that httpcore honours; the pool wait counts as connect time.

Unit tests hand in ``httpx.MockTransport`` through the ``transport`` argument.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import httpx

from gateway.providers.transport import (
    ConnectError,
    PoolExhausted,
    StreamCut,
    UpstreamTimeoutError,
    fold_headers,
    seconds_left,
)

__all__ = ["HttpxResponse", "HttpxTransport"]

_KEEPALIVE_S = 30.0


class HttpxResponse:
    """An httpx response seen through the `UpstreamResponse` seam."""

    __slots__ = ("_closed", "_deadline", "_response", "headers", "status")

    def __init__(self, response: httpx.Response, deadline: float | None) -> None:
        self._response = response
        self._deadline = deadline
        """The exchange's deadline (`send`'s), which `read` keeps unless given its own."""
        self._closed = False
        self.status = response.status_code
        self.headers: Mapping[str, str] = fold_headers(response.headers.multi_items())

    async def read(self, *, deadline: float | None = None) -> bytes:
        chunks = self.iter_bytes(deadline=self._deadline if deadline is None else deadline)
        return b"".join([chunk async for chunk in chunks])

    async def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        stream = self._response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("the httpx transport returned a synchronous stream")
        chunks = aiter(stream)
        try:
            while True:
                try:
                    if deadline is None:
                        chunk = await anext(chunks)
                    else:
                        async with asyncio.timeout(seconds_left(deadline)):
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                if chunk:
                    yield chunk
        except TimeoutError as exc:  # the deadline
            raise UpstreamTimeoutError("upstream exchange passed its deadline") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except httpx.TransportError as exc:
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        # httpcore returns a fully read connection to the pool and closes an unfinished one.
        if not self._closed:
            self._closed = True
            await self._response.aclose()


class HttpxTransport:
    """Sends upstream requests through one httpx transport with a pool of `max_connections`."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if transport is None:
            limits = httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=_KEEPALIVE_S,
            )
            transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        self._transport = transport
        self._closed = False

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
    ) -> HttpxResponse:
        timeout = {
            "connect": connect_timeout_s,
            "read": read_timeout_s,
            "write": read_timeout_s,
            "pool": connect_timeout_s,
        }
        request = httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": timeout}
        )
        try:
            async with asyncio.timeout(seconds_left(deadline)):
                response = await self._transport.handle_async_request(request)
        except httpx.PoolTimeout as exc:
            raise PoolExhausted("no upstream connection slot came free in time") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise UpstreamTimeoutError("upstream did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ConnectError(f"upstream connection failed ({type(exc).__name__})") from exc
        return HttpxResponse(response, deadline)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._transport.aclose()
