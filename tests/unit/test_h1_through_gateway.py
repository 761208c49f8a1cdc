"""A client leaving mid-stream ends the upstream connection, through a real Keyway process.

Keyway (Granian, uvloop, the default `h1` transport, the embedded store) relays a stream from
a provider scripted here, over plain HTTP and over TLS (the provider's self-signed
certificate is trusted through SSL_CERT_FILE), including a TLS provider that never reads
again and so never answers a close_notify. The client reads the first event and hangs up;
the provider must see its connection end while it is still streaming: every token it
generates after that is paid for and thrown away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import make_config, start_gateway
from tests.unit.h1_harness import (
    Server,
    SilentTLSPeer,
    poll,
    self_signed,
    server_tls_context,
    serving,
)

__all__: list[str] = []

EVENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
)
REQUEST = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        await server.stop()


async def endless_stream(servers: list[Server], context: ssl.SSLContext | None) -> Server:
    """A provider that streams one event every 20 ms until its client closes."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        w.write(b"transfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                w.write(b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
                await w.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            server.closed_by_client += 1

    server = await serving(handler, context)
    servers.append(server)
    return server


@pytest.mark.parametrize("kind", ["http", "https", "https-deaf"])
async def test_client_leaving_mid_stream_closes_the_upstream_connection(
    servers: list[Server], tmp_path: Path, kind: str
) -> None:
    """https-deaf: a provider that never reads again, so never answers a close_notify."""
    cert, key = self_signed(tmp_path)
    deaf: SilentTLSPeer | None = None
    if kind == "https-deaf":
        deaf = SilentTLSPeer(cert, key, EVENT)
        port, gone = deaf.port, deaf.gone.is_set
    else:
        provider = await endless_stream(
            servers, server_tls_context(cert, key) if kind == "https" else None
        )
        port, gone = provider.port, lambda: provider.closed_by_client == 1
    scheme = "http://127.0.0.1" if kind == "http" else "https://localhost"
    gateway = await asyncio.to_thread(
        start_gateway,
        tmp_path / "logs",
        make_config(f"{scheme}:{port}"),
        redis_url=None,
        env={"SSL_CERT_FILE": str(cert)},
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: keyway\r\n"
            b"authorization: Bearer sk-client-a\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(REQUEST), REQUEST)
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"data:" in await asyncio.wait_for(reader.read(4096), 10)
        writer.transport.abort()  # the client hangs up mid-stream
        await poll(gone)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(gateway.stop)
        if deaf is not None:
            deaf.close()
