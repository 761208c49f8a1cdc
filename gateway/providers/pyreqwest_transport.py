"""The upstream transport over pyreqwest (Rust reqwest/hyper, its own Tokio runtime thread).

Two settings matter for correctness, not just speed:

- ``streamed_read_buffer_limit(0)`` on every request. pyreqwest's default (64 KiB) makes a
  streamed response pre-read the body until 64 KiB or the end before it hands back the
  headers, which holds back an SSE stream's first tokens until the whole answer is done.
- gzip/brotli/zstd/deflate off: reqwest otherwise adds ``accept-encoding`` and decodes.

pyreqwest sets connect and read timeouts per client, not per request, so this transport keeps
one client (with its own pool of `max_connections`) per distinct ``(connect, read)`` pair.
pyreqwest reports a read timeout before the headers as a connect timeout; both map to
`UpstreamTimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PoolTimeoutError, RequestError, RequestTimeoutError
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from gateway.providers.transport import (
    ConnectError,
    PoolExhausted,
    StreamCut,
    UpstreamTimeoutError,
    fold_headers,
    seconds_left,
)

__all__ = ["PyreqwestResponse", "PyreqwestTransport"]

_KEEPALIVE_S = 30.0


class PyreqwestResponse:
    """A pyreqwest streamed response seen through the `UpstreamResponse` seam."""

    __slots__ = ("_closed", "_deadline", "_request", "_response", "headers", "status")

    def __init__(self, request: StreamRequest, response: Response, deadline: float | None) -> None:
        self._request = request
        self._response = response
        self._deadline = deadline
        """The exchange's deadline (`send`'s), which `read` keeps unless given its own."""
        self._closed = False
        self.status = response.status
        self.headers: Mapping[str, str] = fold_headers(response.headers.items())

    async def read(self, *, deadline: float | None = None) -> bytes:
        left = seconds_left(self._deadline if deadline is None else deadline)
        try:
            async with asyncio.timeout(left):
                body = await self._response.body_reader.bytes()
        except (RequestTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except RequestError as exc:
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        finally:
            await self.aclose()
        return body.to_bytes()

    async def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        reader = self._response.body_reader
        try:
            while True:
                if deadline is None:
                    chunk = await reader.read_chunk()
                else:
                    async with asyncio.timeout(seconds_left(deadline)):
                        chunk = await reader.read_chunk()
                if chunk is None:
                    break
                yield chunk.to_bytes()
        except (RequestTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except RequestError as exc:
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        # pyreqwest raises if the response context is exited twice; hyper drops an unfinished
        # connection instead of draining it.
        if not self._closed:
            self._closed = True
            await self._request.__aexit__(None, None, None)


class PyreqwestTransport:
    """Sends upstream requests through pyreqwest clients, one per timeout pair."""

    def __init__(self, *, max_connections: int = 1000) -> None:
        self._max_connections = max_connections
        self._clients: dict[tuple[float, float], Client] = {}

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
    ) -> PyreqwestResponse:
        client = self._clients.get((connect_timeout_s, read_timeout_s))
        if client is None:
            client = self._build_client(connect_timeout_s, read_timeout_s)
        builder = client.request(method, url).headers(headers).streamed_read_buffer_limit(0)
        if body is not None:
            builder = builder.body_bytes(body)
        request = builder.build_streamed()
        try:
            async with asyncio.timeout(seconds_left(deadline)):
                response = await request.__aenter__()
        except PoolTimeoutError as exc:
            raise PoolExhausted("no upstream connection slot came free in time") from exc
        except (RequestTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeoutError("upstream did not answer in time") from exc
        except RequestError as exc:
            raise ConnectError(f"upstream connection failed ({type(exc).__name__})") from exc
        return PyreqwestResponse(request, response, deadline)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    def _build_client(self, connect_s: float, read_s: float) -> Client:
        client = (
            ClientBuilder()
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
            .referer(False)
            .no_proxy()
            .max_connections(self._max_connections)
            .pool_max_idle_per_host(self._max_connections)
            .pool_idle_timeout(timedelta(seconds=_KEEPALIVE_S))
            .pool_timeout(timedelta(seconds=connect_s))
            .connect_timeout(timedelta(seconds=connect_s))
            .read_timeout(timedelta(seconds=read_s))
            .build()
        )
        self._clients[(connect_s, read_s)] = client
        return client
