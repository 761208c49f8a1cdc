"""What is specific to the `h1` transport (the shared contract is in test_transport.py).

Each test scripts a raw asyncio server connection by connection, so the exact moment a server
closes, what it sent before, and how many connections the pool opened are under its control:
the stale keep-alive retry, bodies framed by chunks or by the close, cuts, the pool bound and
eviction, idle expiry, back-pressure, cancellation and TLS. The servers and the self-signed
certificate come from `h1_harness`; framing, timeouts, TLS and the pool under stress have
their own files (test_h1_framing, test_h1_exchange, test_h1_pool, test_h1_through_gateway).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.providers import h1_transport
from gateway.providers.h1_request import encode_request
from gateway.providers.h1_transport import H1Transport
from gateway.providers.transport import (
    ConnectError,
    PoolExhausted,
    StreamCut,
    UpstreamTimeoutError,
)
from tests.unit.h1_harness import (
    OK,
    Handler,
    Server,
    assert_discreet,
    connection_of,
    poll,
    post,
    self_signed,
    server_tls_context,
    serving,
)

__all__: list[str] = []


# -- keep-alive and the stale-connection retry ------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_reused_connection_dying_before_any_byte_is_retried_once(
    transport: H1Transport, servers: list[Server], how: str
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            if index == 0 and server.requests == 2:  # its idle timeout raced our reuse
                if how == "reset":
                    w.transport.abort()
                else:
                    w.close()
                return
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"ok"
    assert await (await post(transport, server.url)).read() == b"ok"
    assert (server.connections, server.requests) == (2, 3)


async def test_reused_connection_dying_late_is_not_retried(
    transport: H1Transport, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silence, then a close: the server was probably working on it; never send it twice."""
    monkeypatch.setattr(h1_transport, "STALE_RETRY_WINDOW_S", 0.05)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(OK)
        await server.request(reader)
        await asyncio.sleep(0.3)  # longer than the window: this was no idle-timeout race
        w.close()

    server = await serving(handler)
    servers.append(server)
    await (await post(transport, server.url)).read()
    with pytest.raises(ConnectError) as caught:
        await post(transport, server.url)
    assert_discreet(caught.value)
    assert (server.connections, server.requests) == (1, 2)


async def test_reused_connection_failing_after_a_response_byte_is_not_retried(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(OK)
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # then the connection dies

    server = await serving(handler)
    servers.append(server)
    await (await post(transport, server.url)).read()
    with pytest.raises(ConnectError) as caught:
        await post(transport, server.url)
    assert_discreet(caught.value)
    assert (server.connections, server.requests) == (1, 2)


async def test_fresh_connection_dying_before_any_byte_is_not_retried(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(ConnectError) as caught:
        await post(transport, server.url)
    assert_discreet(caught.value)
    assert (server.connections, server.requests) == (1, 1)
    assert transport.open_count() == 0


async def test_idle_connection_closed_by_the_server_is_noticed_before_reuse(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(OK)
        await w.drain()
        if index == 0:
            await asyncio.sleep(0.05)  # idle for a moment, then the server closes it
            w.close()
            return
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    await (await post(transport, server.url)).read()
    await poll(lambda: transport.idle_count() == 0)
    assert await (await post(transport, server.url)).read() == b"ok"
    assert (server.connections, server.requests) == (2, 2)  # nothing was written to the dead one


async def test_connection_close_response_is_not_reused(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    await (await post(transport, server.url)).read()
    await (await post(transport, server.url)).read()
    assert server.connections == 2
    await poll(lambda: server.closed_by_client == 2)


async def test_informational_response_is_skipped(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)

    server = await serving(handler)
    servers.append(server)
    for _ in range(2):
        response = await post(transport, server.url)
        assert (response.status, "link" in response.headers) == (200, False)
        assert await response.read() == b"ok"
    assert server.connections == 1


# -- body framing and cuts --------------------------------------------------------------------


async def test_chunked_body_with_extensions_and_trailers_then_reuse(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            w.write(b"5;ext=1\r\nhello\r\n")
            await w.drain()
            w.write(b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"hello world"
    streamed = [chunk async for chunk in (await post(transport, server.url)).iter_bytes()]
    assert b"".join(streamed) == b"hello world"
    assert server.connections == 1


@pytest.mark.parametrize("consume", ["read", "iter_bytes"])
async def test_body_delimited_by_close(
    transport: H1Transport, servers: list[Server], consume: str
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"part two")
        await w.drain()
        w.close()

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    if consume == "read":
        body = await response.read()
    else:
        body = b"".join([chunk async for chunk in response.iter_bytes()])
    assert body == b"part one, part two"
    await (await post(transport, server.url)).read()
    assert server.connections == 2


@pytest.mark.parametrize("consume", ["read", "iter_bytes"])
async def test_server_closing_mid_content_length_body_raises_stream_cut(
    transport: H1Transport, servers: list[Server], consume: str
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await w.drain()
        await asyncio.sleep(0.01)
        w.close()

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    with pytest.raises(StreamCut) as caught:
        if consume == "read":
            await response.read()
        else:
            async for chunk in response.iter_bytes():
                assert chunk == b"0123456789"
    assert_discreet(caught.value)
    assert transport.open_count() == 0


async def test_malformed_status_line_is_a_connect_error(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"SMTP ready\r\n\r\n")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(ConnectError):
        await post(transport, server.url)


async def test_each_chunk_gets_its_own_read_timeout(
    transport: H1Transport, servers: list[Server]
) -> None:
    """Six gaps of 0.3 s outlast one 1 s timeout; per-wait timeouts must let them through."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.3)
            w.write(b"1\r\nx\r\n")
            await w.drain()
        w.write(b"0\r\n\r\n")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url, read_timeout_s=1.0)
    assert b"".join([chunk async for chunk in response.iter_bytes()]) == b"x" * 6


async def test_unread_body_closes_the_connection(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    await response.aclose()
    await poll(lambda: server.closed_by_client == 1)
    await post(transport, server.url)
    assert server.connections == 2


async def test_cancelled_request_closes_its_connection(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await post(transport, server.url)
    await poll(lambda: server.closed_by_client == 1)
    assert transport.open_count() == 0


async def test_reading_pauses_while_the_consumer_is_behind(
    transport: H1Transport, servers: list[Server]
) -> None:
    size = 16 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for start in range(0, size, 65536):
            w.write(payload[start : start + 65536])
            await w.drain()
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    conn = connection_of(response)
    await poll(lambda: conn.paused)
    assert conn.buffered < 2 * 1024 * 1024  # held back, not the whole 16 MiB
    await asyncio.sleep(0.05)
    assert conn.paused
    assert await response.read() == payload


# -- the pool ---------------------------------------------------------------------------------


async def test_pool_bound_holds_requests_until_a_connection_is_free(servers: list[Server]) -> None:
    release = asyncio.Event()

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            await release.wait()
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(max_connections=2)
    try:
        calls = [asyncio.create_task(post(transport, server.url)) for _ in range(3)]
        await poll(lambda: server.requests == 2)
        with pytest.raises(PoolExhausted) as caught:  # the wait for a slot is bounded
            await post(transport, server.url, connect_s=0.1)
        # the gateway's own capacity, not an upstream failure (the router must not blame a key)
        assert not isinstance(caught.value, (ConnectError, UpstreamTimeoutError))
        assert_discreet(caught.value)
        assert (server.connections, calls[2].done()) == (2, False)
        release.set()
        assert [await (await call).read() for call in calls] == [b"ok"] * 3
        assert (server.connections, server.requests) == (2, 3)
        assert transport.open_count() == 2
    finally:
        await transport.aclose()


async def test_full_pool_evicts_an_idle_connection_of_another_origin(
    servers: list[Server],
) -> None:
    def keep_alive(server: Callable[[], Server]) -> Handler:
        async def handler(
            index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter
        ) -> None:
            while await server().request(reader) is not None:
                w.write(OK)

        return handler

    first = await serving(keep_alive(lambda: first))
    second = await serving(keep_alive(lambda: second))
    servers.extend((first, second))
    transport = H1Transport(max_connections=1)
    try:
        await (await post(transport, first.url)).read()
        await (await post(transport, second.url)).read()
        await poll(lambda: first.closed_by_client == 1)
        assert transport.open_count() == 1
    finally:
        await transport.aclose()


async def test_idle_connections_expire(servers: list[Server]) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(idle_timeout_s=0.05)
    try:
        await (await post(transport, server.url)).read()
        await poll(lambda: server.closed_by_client == 1)  # the sweep closed it
        await (await post(transport, server.url)).read()
        assert server.connections == 2
    finally:
        await transport.aclose()


# -- TLS --------------------------------------------------------------------------------------


async def tls_server(tmp_path: Path, servers: list[Server]) -> tuple[Server, Path]:
    cert_path, key_path = self_signed(tmp_path)
    context = server_tls_context(cert_path, key_path)

    def record_sni(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        server.server_names.append(server_name)

    context.sni_callback = record_sni  # type: ignore[assignment]

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (head := await server.request(reader)) is not None:
            host = next(line for line in head.split(b"\r\n") if line.startswith(b"host:"))
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(host), host))

    server = await serving(handler, context)
    servers.append(server)
    return server, cert_path


async def test_tls_with_sni_and_keep_alive(tmp_path: Path, servers: list[Server]) -> None:
    server, cert_path = await tls_server(tmp_path, servers)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    transport = H1Transport(ssl_context=trusting)
    url = f"https://localhost:{server.port}/v1/chat"
    try:
        for _ in range(2):
            response = await post(transport, url)
            assert await response.read() == f"host: localhost:{server.port}".encode()
        assert server.server_names == ["localhost"]  # SNI sent, one TLS connection reused
        assert server.connections == 1
    finally:
        await transport.aclose()


async def test_tls_verifies_the_certificate_by_default(
    tmp_path: Path, servers: list[Server]
) -> None:
    server, _ = await tls_server(tmp_path, servers)
    transport = H1Transport()
    try:
        with pytest.raises(ConnectError, match="SSLCertVerificationError") as caught:
            await post(transport, f"https://localhost:{server.port}/v1/chat")
        assert_discreet(caught.value)
        assert transport.open_count() == 0
    finally:
        await transport.aclose()


# -- the request bytes ------------------------------------------------------------------------


def test_request_is_one_block_with_host_and_framing_owned_by_the_transport() -> None:
    headers = [("Host", "evil"), ("content-type", "a/b"), ("Content-Length", "99"), ("X-A", "é")]
    assert encode_request("POST", "/v1/x?q=1", "api.test", headers, b"{}") == (
        b"POST /v1/x?q=1 HTTP/1.1\r\nhost: api.test\r\ncontent-type: a/b\r\nX-A: \xe9\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    assert (
        encode_request("GET", "/", "h:8080", [], None) == b"GET / HTTP/1.1\r\nhost: h:8080\r\n\r\n"
    )
    assert encode_request("POST", "/", "h", [], None).endswith(b"content-length: 0\r\n\r\n")
    assert b"x: \xe2\x82\xac" in encode_request("GET", "/", "h", [("x", "€")], None)  # not latin-1


@pytest.mark.parametrize(
    "headers", [[("x", "a\r\nevil: 1")], [("x", "a\nb")], [("x\r", "a")], [("x", "a\rb")]]
)
def test_line_breaks_inside_a_header_are_refused(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="CR or LF") as caught:
        encode_request("POST", "/", "h", headers, b"")
    assert "evil" not in str(caught.value)


async def test_unsupported_or_invalid_urls_are_connect_errors(transport: H1Transport) -> None:
    with pytest.raises(ConnectError, match="not an absolute http"):
        await transport.send("GET", "ftp://x/", [], None, connect_timeout_s=1, read_timeout_s=1)
    for url in ("http://x:99999/", "http://a..b/", f"https://{'a' * 64}.test/"):
        with pytest.raises(ConnectError, match="invalid"):  # not a UnicodeError from DNS
            await transport.send("GET", url, [], None, connect_timeout_s=1, read_timeout_s=1)
