"""Scripted loopback servers and helpers shared by the `h1` transport tests.

Each test scripts a raw asyncio server connection by connection, so the exact moment a server
closes, what it sent before, and how many connections the pool opened are under its control.
TLS servers use a self-signed certificate made here with `cryptography`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.providers.h1_connection import H1Connection
from gateway.providers.h1_response import H1Response
from gateway.providers.h1_transport import H1Transport

__all__ = [
    "BODY",
    "CONNECT_S",
    "HEADERS",
    "OK",
    "READ_S",
    "SECRET",
    "Handler",
    "HeldTLSServer",
    "Server",
    "SilentTLSPeer",
    "assert_discreet",
    "connection_of",
    "poll",
    "post",
    "self_signed",
    "server_tls_context",
    "serving",
]

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

    async def head(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read one request head (not its body); None when the client closed."""
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            return None

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read one request (head and content-length body); None when the client closed."""
        head = await self.head(reader)
        if head is None:
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


class HeldTLSServer(Server):
    """A TLS server that accepts each TCP connection, then waits for `hold(index)` before the
    handshake (nothing is read meanwhile); when `hold` answers False the connection is reset.
    """

    def __init__(
        self, handler: Handler, ssl_context: ssl.SSLContext, hold: Callable[[int], Awaitable[bool]]
    ) -> None:
        super().__init__(handler, ssl_context)
        self.hold = hold
        self._listener = socket.socket()
        self._acceptor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._acceptor = asyncio.create_task(self._accept_all())

    async def stop(self) -> None:
        assert self._acceptor is not None
        self._acceptor.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(self._acceptor, *self._tasks, return_exceptions=True)
        self._listener.close()

    async def _accept_all(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(self._listener)
            index = self.connections
            self.connections += 1
            task = asyncio.create_task(self._held(index, sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _held(self, index: int, sock: socket.socket) -> None:
        try:
            if not await self.hold(index):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.ssl_context
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await self._run(index, reader, writer)
        finally:
            sock.close()


class SilentTLSPeer:
    """A blocking TLS server thread that streams forever and never reads after the request,
    so it never answers a close_notify; it records when a write fails (the client is gone)."""

    def __init__(self, cert: Path, key: Path, event: bytes = b"data: x\n") -> None:
        self.chunk = b"%x\r\n%s\r\n" % (len(event), event)
        self.context = server_tls_context(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.gone = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        raw, _ = self.listener.accept()
        with self.context.wrap_socket(raw, server_side=True) as tls:
            tls.recv(65536)  # the request (small enough for one record)
            tls.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                while not self.stop.wait(0.01):
                    tls.sendall(self.chunk)
            except OSError:
                self.gone.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> Server:
    server = Server(handler, ssl_context)
    await server.start()
    return server


async def post(
    transport: H1Transport,
    url: str,
    *,
    read_timeout_s: float = READ_S,
    connect_s: float = CONNECT_S,
    body: bytes = BODY,
) -> H1Response:
    return await transport.send(
        "POST", url, HEADERS, body, connect_timeout_s=connect_s, read_timeout_s=read_timeout_s
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
    assert "authorization" not in str(exc).lower()


def self_signed(directory: Path, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """A certificate for `names` (and 127.0.0.1 when "localhost" is one), and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    if "localhost" in names:
        alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
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


def server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context
