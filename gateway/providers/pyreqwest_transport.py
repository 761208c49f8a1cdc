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

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import RequestError, RequestTimeoutError
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from gateway.providers.transport import (
    ConnectError,
    StreamCut,
    UpstreamTimeoutError,
    fold_headers,
)

__all__ = ["PyreqwestResponse", "PyreqwestTransport"]

_KEEPALIVE_S = 30.0


class PyreqwestResponse:
    """A pyreqwest streamed response seen through the `UpstreamResponse` seam."""

    __slots__ = ("_closed", "_request", "_response", "headers", "status")

    def __init__(self, request: StreamRequest, response: Response) -> None:
        self._request = request
        self._response = response
        self._closed = False
        self.status = response.status
        self.headers: Mapping[str, str] = fold_headers(response.headers.items())

    async def read(self) -> bytes:
        try:
            body = await self._response.body_reader.bytes()
        except RequestTimeoutError as exc:
            raise UpstreamTimeoutError("upstream read timed out mid-body") from exc
        except RequestError as exc:
            raise StreamCut(f"upstream body cut ({type(exc).__name__})") from exc
        finally:
            await self.aclose()
        return body.to_bytes()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        reader = self._response.body_reader
        try:
            while (chunk := await reader.read_chunk()) is not None:
                yield chunk.to_bytes()
        except RequestTimeoutError as exc:
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
    ) -> PyreqwestResponse:
        client = self._clients.get((connect_timeout_s, read_timeout_s))
        if client is None:
            client = self._build_client(connect_timeout_s, read_timeout_s)
        builder = client.request(method, url).headers(headers).streamed_read_buffer_limit(0)
        if body is not None:
            builder = builder.body_bytes(body)
        request = builder.build_streamed()
        try:
            response = await request.__aenter__()
        except RequestTimeoutError as exc:
            raise UpstreamTimeoutError("upstream did not answer in time") from exc
        except RequestError as exc:
            raise ConnectError(f"upstream connection failed ({type(exc).__name__})") from exc
        return PyreqwestResponse(request, response)

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
