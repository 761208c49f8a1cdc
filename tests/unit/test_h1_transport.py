"""What is specific to the `h1` transport (the shared contract is in test_transport.py).

Each test scripts a raw asyncio server connection by connection, so the exact moment a server
closes, what it sent before, and how many connections the pool opened are under its control:
the stale keep-alive retry, bodies framed by chunks or by the close, cuts, the pool bound and
eviction, idle expiry, back-pressure, cancellation and TLS (a self-signed certificate made
here with `cryptography`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.providers.h1_connection import H1Connection
from gateway.providers.h1_transport import H1Response, H1Transport, encode_request
from gateway.providers.transport import ConnectError, StreamCut, UpstreamTimeoutError

__all__: list[str] = []

SECRET = "sk-very-secret"
HEADERS = [("content-type", "application/json"), ("authorization", f"Bearer {SECRET}")]
BODY = b'{"model":"m"}'
CONNECT_S = 2.0
READ_S = 5.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
POLL_S = 0.01
POLL_LIMIT = 500
"""Polls give up after POLL_LIMIT * POLL_S = 5 s (only a failing test gets there)."""

Handler = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server that runs `handler(connection index, reader, writer)` per connection."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests = 0
        self.closed_by_client = 0
        self.server_names: list[str | None] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        task = asyncio.create_task(self._run(index, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self.handler(index, reader, writer)
        finally:
            writer.transport.abort()

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read one request (head and content-length body); None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.requests += 1
        return head

    async def until_client_closes(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        self.closed_by_client += 1


async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> Server:
    server = Server(handler, ssl_context)
    await server.start()
    return server


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    instance = H1Transport(max_connections=16)
    yield instance
    await instance.aclose()


async def post(
    transport: H1Transport,
    url: str,
    *,
    read_timeout_s: float = READ_S,
    connect_s: float = CONNECT_S,
) -> H1Response:
    return await transport.send(
        "POST", url, HEADERS, BODY, connect_timeout_s=connect_s, read_timeout_s=read_timeout_s
    )


async def poll(condition: Callable[[], bool]) -> None:
    for _ in range(POLL_LIMIT):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError("condition never became true")


def connection_of(response: H1Response) -> H1Connection:
    conn = response._conn
    assert conn is not None
    return conn


def assert_discreet(exc: BaseException) -> None:
    """Seam messages name neither the secret nor where the request went."""
    assert SECRET not in str(exc)
    assert "127.0.0.1" not in str(exc)
    assert "localhost" not in str(exc)


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
        with pytest.raises(UpstreamTimeoutError):
            await post(transport, server.url, connect_s=0.1)  # the wait for a slot is bounded
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


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def tls_server(tmp_path: Path, servers: list[Server]) -> tuple[Server, Path]:
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

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
    with pytest.raises(ConnectError, match="invalid"):
        await transport.send(
            "GET", "http://x:99999/", [], None, connect_timeout_s=1, read_timeout_s=1
        )
