"""Contract tests for the upstream transport seam, run against every implementation.

Each test talks to a tiny raw-asyncio HTTP/1.1 server on a free loopback port, so the bytes on
the wire (what the transport sends, when the server sends each chunk, how a connection dies)
are fully under the test's control.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import time
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from gateway.providers.httpx_transport import HttpxTransport
from gateway.providers.transport import (
    KINDS,
    ConnectError,
    PoolExhausted,
    StreamCut,
    UpstreamTimeoutError,
    UpstreamTransport,
    create_transport,
    fold_headers,
)

__all__: list[str] = []

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
HEADERS = [
    ("content-type", "application/json"),
    ("authorization", "Bearer sk-test"),
    ("X-Trace", "t1"),
]
BODY = b'{"model":"m","messages":[]}'
CONNECT_S = 2.0
READ_S = 5.0


class Upstream:
    """A scripted provider: the request path picks the behaviour."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.client_gone = asyncio.Event()
        self.request_heads: list[list[tuple[str, str]]] = []
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = [_field(line) for line in lines[1:] if line]
                self.request_heads.append(headers)
                length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
                body = await reader.readexactly(length)
                if not await self._respond(method, path, headers, body, reader, writer):
                    return
        finally:
            writer.transport.abort()

    async def _respond(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False ends the connection."""
        if path == "/echo":
            payload = _json.encode({"method": method, "headers": headers, "body": body.decode()})
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b"X-Request-Id: req-1\r\nX-Multi: a\r\nX-Multi: b\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
            )
            await writer.drain()
            return True
        if path == "/gzip":
            payload = gzip.compress(b'{"ok":true}')
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
            )
            await writer.drain()
            return True
        if path == "/hang":
            await reader.read()  # until the client gives up and closes
            return False
        if path in ("/trickle-head", "/trickle-body"):
            # one byte every 50 ms: progress for every read timeout, forever
            if path == "/trickle-head":
                writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                for _ in range(400):  # 20 s: only a failing test gets there
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    if writer.is_closing():
                        break
                    writer.write(b"a")
            self.client_gone.set()
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(b"data: 1\n\n"))
        await writer.drain()
        if path == "/stream":
            await self.release.wait()
            writer.write(_chunk(b"data: 2\n\n") + b"0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/stall":
            await reader.read()
            self.client_gone.set()
        return False  # "/cut": the connection dies mid-body


def _field(line: str) -> tuple[str, str]:
    name, value = line.split(": ", 1)
    return name, value


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=KINDS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamTransport]:
    instance = create_transport(request.param, max_connections=16)
    yield instance
    await instance.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_json_round_trip_preserves_headers(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    response = await transport.send(
        "POST",
        upstream.url + "/echo",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    echoed = _decode.decode(await response.read())
    assert response.status == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-multi"] == "a, b"
    assert echoed["method"] == "POST"
    assert echoed["body"] == BODY.decode()
    sent = {name.lower(): value for name, value in echoed["headers"]}
    assert sent["authorization"] == "Bearer sk-test"
    assert sent["x-trace"] == "t1"
    assert sent["content-length"] == str(len(BODY))
    await response.aclose()


async def test_connection_is_reused_after_a_complete_body(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    for _ in range(3):
        response = await transport.send(
            "POST",
            upstream.url + "/echo",
            HEADERS,
            BODY,
            connect_timeout_s=CONNECT_S,
            read_timeout_s=READ_S,
        )
        await response.read()
    assert len(upstream.request_heads) == 3
    assert upstream.connections == 1  # one keep-alive connection served all three


async def test_encoded_body_passes_through_untouched(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    response = await transport.send(
        "GET", upstream.url + "/gzip", [], None, connect_timeout_s=CONNECT_S, read_timeout_s=READ_S
    )
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == b'{"ok":true}'
    sent = {name.lower() for name, _ in upstream.request_heads[0]}
    assert "accept-encoding" not in sent


async def test_stream_delivers_each_chunk_before_the_next_is_sent(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    response = await transport.send(
        "POST",
        upstream.url + "/stream",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    assert response.headers["content-type"] == "text/event-stream"
    chunks = response.iter_bytes()
    # The server sends chunk 2 only after this release, so a buffering transport blocks here.
    assert await anext(chunks) == b"data: 1\n\n"
    upstream.release.set()
    assert [chunk async for chunk in chunks] == [b"data: 2\n\n"]


async def test_closed_port_raises_connect_error(transport: UpstreamTransport) -> None:
    with pytest.raises(ConnectError):
        await transport.send(
            "POST",
            f"http://127.0.0.1:{_closed_port()}/",
            HEADERS,
            BODY,
            connect_timeout_s=CONNECT_S,
            read_timeout_s=READ_S,
        )


async def test_silent_server_raises_timeout(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    with pytest.raises(UpstreamTimeoutError):
        await transport.send(
            "POST",
            upstream.url + "/hang",
            HEADERS,
            BODY,
            connect_timeout_s=CONNECT_S,
            read_timeout_s=0.2,
        )


async def test_stalled_body_raises_timeout(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    response = await transport.send(
        "POST",
        upstream.url + "/stall",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=0.2,
    )
    chunks = response.iter_bytes()
    assert await anext(chunks) == b"data: 1\n\n"
    with pytest.raises(UpstreamTimeoutError):
        await anext(chunks)


@pytest.mark.parametrize("consume", ["iter_bytes", "read"])
async def test_connection_dropped_mid_body_raises_stream_cut(
    transport: UpstreamTransport, upstream: Upstream, consume: str
) -> None:
    response = await transport.send(
        "POST",
        upstream.url + "/cut",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    with pytest.raises(StreamCut):
        if consume == "read":
            await response.read()
        else:
            async for _ in response.iter_bytes():
                pass


async def test_aclose_abandons_an_unfinished_body_and_is_idempotent(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    response = await transport.send(
        "POST",
        upstream.url + "/stall",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    assert await anext(response.iter_bytes()) == b"data: 1\n\n"
    await response.aclose()
    await response.aclose()
    await upstream.client_gone.wait()  # the connection was closed, not drained or pooled
    await transport.aclose()
    await transport.aclose()


@pytest.mark.parametrize("path", ["/trickle-head", "/trickle-body"])
async def test_the_deadline_bounds_an_exchange_trickled_forever(
    transport: UpstreamTransport, upstream: Upstream, path: str
) -> None:
    """`send`, then `read`, end at the deadline given to `send` whatever trickles in; the read
    timeout, which every byte re-arms, never would."""
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        response = await transport.send(
            "POST",
            upstream.url + path,
            HEADERS,
            BODY,
            connect_timeout_s=CONNECT_S,
            read_timeout_s=READ_S,
            deadline=started + 0.4,
        )
        await response.read()
    assert 0.35 < time.monotonic() - started < 2.0
    await asyncio.wait_for(upstream.client_gone.wait(), 5)  # the connection was dropped


async def test_a_stream_is_bounded_by_its_own_deadline_not_the_sends(
    transport: UpstreamTransport, upstream: Upstream
) -> None:
    sent = time.monotonic()
    response = await transport.send(
        "POST",
        upstream.url + "/stream",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
        deadline=sent + 0.2,
    )
    chunks = response.iter_bytes()
    assert await anext(chunks) == b"data: 1\n\n"
    await asyncio.sleep(0.3)  # past the deadline given to send: it covered connect and head
    upstream.release.set()
    assert [chunk async for chunk in chunks] == [b"data: 2\n\n"]
    response = await transport.send(
        "POST",
        upstream.url + "/stall",
        HEADERS,
        BODY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    started = time.monotonic()
    chunks = response.iter_bytes(deadline=started + 0.3)
    assert await anext(chunks) == b"data: 1\n\n"
    with pytest.raises(UpstreamTimeoutError):
        await anext(chunks)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("kind", ["h1", "httpx", "pyreqwest"])
async def test_no_free_pooled_connection_is_pool_exhausted(upstream: Upstream, kind: str) -> None:
    """The gateway's own capacity, not an upstream failure (aiohttp cannot tell them apart)."""
    transport = create_transport(kind, max_connections=1)
    try:
        held = await transport.send(
            "POST",
            upstream.url + "/stream",
            HEADERS,
            BODY,
            connect_timeout_s=0.3,
            read_timeout_s=READ_S,
        )
        with pytest.raises(PoolExhausted):
            await transport.send(
                "POST",
                upstream.url + "/echo",
                HEADERS,
                BODY,
                connect_timeout_s=0.3,
                read_timeout_s=READ_S,
            )
        upstream.release.set()
        assert b"".join([chunk async for chunk in held.iter_bytes()]).endswith(b"data: 2\n\n")
    finally:
        await transport.aclose()


async def test_httpx_transport_accepts_a_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=[("X-Up", "1")], content=b'{"id":"x"}')

    transport = HttpxTransport(transport=httpx.MockTransport(answer))
    response = await transport.send(
        "POST",
        "http://provider.test/v1/chat",
        HEADERS,
        BODY,
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
    )
    assert (response.status, response.headers["x-up"]) == (200, "1")
    assert await response.read() == b'{"id":"x"}'
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert seen[0].content == BODY
    await transport.aclose()


async def test_httpx_mock_transport_errors_map_to_the_seam() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = HttpxTransport(transport=httpx.MockTransport(refuse))
    with pytest.raises(ConnectError):
        await transport.send(
            "GET", "http://provider.test/", [], None, connect_timeout_s=1.0, read_timeout_s=1.0
        )


def test_fold_headers_lowercases_and_joins_repeats() -> None:
    assert fold_headers([("X-A", "1"), ("x-a", "2"), ("Content-Type", "t")]) == {
        "x-a": "1, 2",
        "content-type": "t",
    }


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown upstream transport"):
        create_transport("curl")
