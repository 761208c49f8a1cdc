"""One `h1` exchange from the request bytes to the end: timeouts, abandoning, TLS, the target.

Abandoning an exchange (a cancelled caller, a timeout, `aclose` mid-body) must end it on the
wire at once: the rest of an unsent request body is dropped, and a TLS connection does not
wait for the peer's close_notify while the provider keeps generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path

import pytest

from gateway.providers.h1_transport import H1Transport
from gateway.providers.transport import ConnectError, StreamCut, UpstreamTimeoutError
from tests.unit.h1_harness import (
    OK,
    Server,
    SilentTLSPeer,
    assert_discreet,
    connection_of,
    poll,
    post,
    self_signed,
    server_tls_context,
    serving,
)

__all__: list[str] = []

PASSWORD = "pw-in-the-url"


# -- read timeouts ----------------------------------------------------------------------------


async def test_a_head_trickled_slower_than_the_whole_timeout_is_not_a_timeout(
    transport: H1Transport, servers: list[Server]
) -> None:
    """Each wait for data gets the read timeout: bytes of the head keep arriving in time."""
    head = b"HTTP/1.1 200 OK\r\nX-Slow: abcdef\r\nContent-Length: 2\r\n\r\n"

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        for start in range(0, len(head), 8):  # 7 pieces, 0.15 s apart: 1 s in all
            w.write(head[start : start + 8])
            await w.drain()
            await asyncio.sleep(0.15)
        w.write(b"ok")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url, read_timeout_s=0.5)
    assert await response.read() == b"ok"


async def test_a_body_trickled_byte_by_byte_is_not_a_timeout(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        for byte in b"slow!":
            await asyncio.sleep(0.15)
            w.write(bytes([byte]))
            await w.drain()
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url, read_timeout_s=0.5)
    assert await response.read() == b"slow!"


async def test_a_head_that_stops_halfway_times_out(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nX-Half: ")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(UpstreamTimeoutError) as caught:
        await post(transport, server.url, read_timeout_s=0.2)
    assert_discreet(caught.value)
    await poll(lambda: server.closed_by_client == 1)


# -- the deadline: a total bound that no trickle of bytes moves --------------------------------


async def trickling(servers: list[Server], head: bytes, every_s: float = 0.05) -> Server:
    """A server that sends `head`, then one byte every `every_s` until the client hangs up."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(head)
        with contextlib.suppress(ConnectionError):
            for _ in range(400):  # 20 s: only a failing test gets there
                await asyncio.sleep(every_s)
                if w.is_closing():
                    break
                w.write(b"a")
                await w.drain()
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    return server


async def test_a_head_trickled_forever_ends_at_the_deadline(
    transport: H1Transport, servers: list[Server]
) -> None:
    """Each byte is read progress (the read timeout never fires), but the deadline does."""
    server = await trickling(servers, b"HTTP/1.1 200 OK\r\nX-Endless: ")
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match="deadline") as caught:
        await transport.send(
            "POST",
            server.url,
            [],
            b"{}",
            connect_timeout_s=2,
            read_timeout_s=5,
            deadline=started + 0.4,
        )
    assert 0.35 < time.monotonic() - started < 1.5
    assert_discreet(caught.value)
    await poll(lambda: server.closed_by_client == 1)
    assert transport.open_count() == 0


async def test_a_body_trickled_forever_ends_the_read_at_the_send_deadline(
    transport: H1Transport, servers: list[Server]
) -> None:
    server = await trickling(servers, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    started = time.monotonic()
    response = await transport.send(
        "POST",
        server.url,
        [],
        b"{}",
        connect_timeout_s=2,
        read_timeout_s=5,
        deadline=started + 0.4,
    )
    with pytest.raises(UpstreamTimeoutError, match="deadline"):
        await response.read()
    assert 0.35 < time.monotonic() - started < 1.5
    await poll(lambda: server.closed_by_client == 1)
    assert transport.open_count() == 0


async def test_a_body_flowing_fast_forever_ends_the_read_at_its_deadline(
    transport: H1Transport, servers: list[Server]
) -> None:
    """Data at every loop turn keeps the waiter woken before the timer runs: every wait checks
    the deadline itself."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(20000):
                w.write(b"x" * 512)
                await w.drain()
                await asyncio.sleep(0.0005)
                if w.is_closing():
                    break
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match="deadline"):
        await response.read(deadline=started + 0.3)
    assert time.monotonic() - started < 1.5


async def test_a_stream_outlives_the_send_deadline_and_ends_at_its_own(
    transport: H1Transport, servers: list[Server]
) -> None:
    """A stream's length is the caller's (routing.max_stream_s): `iter_bytes` is bounded by the
    deadline given to it, not by the one given to `send` (which covered connect and head)."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(12):  # 0.6 s of events
                await asyncio.sleep(0.05)
                w.write(b"5\r\nevent\r\n")
                await w.drain()
            w.write(b"0\r\n\r\n")

    server = await serving(handler)
    servers.append(server)
    sent = time.monotonic()
    response = await transport.send(
        "POST", server.url, [], b"{}", connect_timeout_s=2, read_timeout_s=5, deadline=sent + 0.2
    )
    assert b"".join([chunk async for chunk in response.iter_bytes()]) == b"event" * 12
    response = await post(transport, server.url)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match="deadline"):
        async for _ in response.iter_bytes(deadline=started + 0.2):
            await asyncio.sleep(0.07)  # a consumer slower than the stream never waits for it
    assert time.monotonic() - started < 0.6


async def test_a_deadline_already_passed_sends_nothing(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"ok"  # one idle connection
    with pytest.raises(UpstreamTimeoutError, match="deadline"):
        await transport.send(
            "POST",
            server.url,
            [],
            b"{}",
            connect_timeout_s=2,
            read_timeout_s=5,
            deadline=time.monotonic() - 0.01,
        )
    assert (server.connections, server.requests, transport.idle_count()) == (1, 1, 1)


# -- abandoning an exchange -------------------------------------------------------------------


async def test_an_abandoned_request_stops_sending_its_body(
    transport: H1Transport, servers: list[Server]
) -> None:
    """A server that never reads the body: after the timeout, the unsent rest is dropped."""
    body = b"x" * (64 * 1024 * 1024)
    timed_out = asyncio.Event()
    received = 0

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal received
        await server.head(reader)
        await timed_out.wait()
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
        server.closed_by_client += 1

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(UpstreamTimeoutError):
        await post(transport, server.url, read_timeout_s=0.2, body=body)
    timed_out.set()
    await poll(lambda: server.closed_by_client == 1)
    assert received < len(body) // 2


# -- TLS --------------------------------------------------------------------------------------


async def test_a_certificate_for_another_host_is_refused(
    servers: list[Server], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, ("api.example.test",))

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = await serving(handler, server_tls_context(cert, key))
    servers.append(server)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        with pytest.raises(ConnectError, match="SSLCertVerificationError") as caught:
            await post(transport, f"https://localhost:{server.port}/v1/chat")
        assert_discreet(caught.value)
        assert transport.open_count() == 0
    finally:
        await transport.aclose()


async def test_tls_close_without_close_notify_mid_body_is_a_stream_cut(
    servers: list[Server], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await w.drain()
        await asyncio.sleep(0.02)  # then the harness aborts: no close_notify

    server = await serving(handler, server_tls_context(cert, key))
    servers.append(server)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        response = await post(transport, f"https://localhost:{server.port}/v1/chat")
        with pytest.raises(StreamCut):
            await response.read()
        assert transport.open_count() == 0
    finally:
        await transport.aclose()


async def test_tls_body_delimited_by_a_clean_close(servers: list[Server], tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"the close")
        w.close()  # close_notify, then FIN
        await w.wait_closed()

    server = await serving(handler, server_tls_context(cert, key))
    servers.append(server)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        response = await post(transport, f"https://localhost:{server.port}/v1/chat")
        assert await response.read() == b"until the close"
    finally:
        await transport.aclose()


async def test_tls_back_pressure_holds_a_fast_body_for_a_slow_reader(
    servers: list[Server], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    size = 32 * 1024 * 1024
    sent = 0

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal sent
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"z" * 65536
        while sent < size:
            w.write(piece)
            await w.drain()
            sent += len(piece)
        await server.until_client_closes(reader)

    server = await serving(handler, server_tls_context(cert, key))
    servers.append(server)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        response = await post(transport, f"https://localhost:{server.port}/v1/chat")
        conn = connection_of(response)
        await poll(lambda: conn.paused)
        await asyncio.sleep(0.1)
        assert conn.buffered < 4 * 1024 * 1024
        assert sent < size // 2  # the server is held back too, not buffered for in the gateway
        total = 0
        async for chunk in response.iter_bytes():
            total += len(chunk)
            await asyncio.sleep(0)  # a slow consumer
        assert total == size
    finally:
        await transport.aclose()


async def test_abandoning_a_tls_stream_does_not_wait_for_close_notify(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    peer = SilentTLSPeer(cert, key)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        response = await post(transport, f"https://localhost:{peer.port}/v1/chat")
        chunks = response.iter_bytes()
        assert (await anext(chunks)).startswith(b"data: x")
        await response.aclose()  # the client of the gateway went away
        await poll(peer.gone.is_set)  # the provider learns it at once, not after 30 s
    finally:
        peer.close()
        await transport.aclose()


# -- the request ------------------------------------------------------------------------------


async def test_credentials_in_the_url_are_neither_sent_nor_named(
    transport: H1Transport, servers: list[Server]
) -> None:
    heads: list[bytes] = []

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (head := await server.request(reader)) is not None:
            heads.append(head)
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    url = f"http://user:{PASSWORD}@127.0.0.1:{server.port}/v1/chat"
    assert await (await post(transport, url)).read() == b"ok"
    assert PASSWORD.encode() not in heads[0]
    await server.stop()
    servers.remove(server)
    await transport.aclose()
    with pytest.raises(ConnectError) as caught:
        await post(transport, url)
    assert_discreet(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_the_target_is_percent_encoded_where_http_requires_it(
    transport: H1Transport, servers: list[Server]
) -> None:
    heads: list[bytes] = []

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (head := await server.request(reader)) is not None:
            heads.append(head)
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    base = f"http://127.0.0.1:{server.port}"
    await (await post(transport, f"{base}/openai/deployments/my model/chat?api-version=1")).read()
    await (await post(transport, f"{base}/d/caf\u00e9%2Fx?q=a b&r=%20")).read()
    assert heads[0].startswith(b"POST /openai/deployments/my%20model/chat?api-version=1 HTTP/1.1")
    assert heads[1].startswith(b"POST /d/caf%C3%A9%2Fx?q=a%20b&r=%20 HTTP/1.1")


async def test_other_methods(transport: H1Transport, servers: list[Server]) -> None:
    heads: list[bytes] = []

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (head := await server.request(reader)) is not None:
            heads.append(head)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
            if not head.startswith(b"HEAD"):
                w.write(b"body")

    server = await serving(handler)
    servers.append(server)
    head = await transport.send(
        "HEAD", server.url, [], None, connect_timeout_s=1.0, read_timeout_s=1.0
    )
    assert (head.status, head.headers["content-length"], await head.read()) == (200, "4", b"")
    got = await transport.send("GET", server.url, [], None, connect_timeout_s=1, read_timeout_s=1)
    assert await got.read() == b"body"
    deleted = await transport.send(
        "DELETE", server.url, [], b"{}", connect_timeout_s=1.0, read_timeout_s=1.0
    )
    assert await deleted.read() == b"body"
    assert b"content-length" not in heads[1].lower()
    assert b"content-length: 2" in heads[2].lower()
    assert server.connections == 2  # HEAD closes its connection; GET and DELETE share one
