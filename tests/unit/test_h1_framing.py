"""How the `h1` transport reads what real servers send: framing, odd heads, early answers.

Every response here is written byte by byte by a scripted loopback server, including the ones
a strict parser would refuse but clients on the real internet accept (obs-fold, bare LF,
chunked and content-length together) and the ones that must never leave a connection in the
pool (garbage after a response, a framing conflict).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.providers.h1_transport import H1Transport
from gateway.providers.transport import ConnectError, StreamCut
from tests.unit.h1_harness import OK, Server, assert_discreet, poll, post, serving

__all__: list[str] = []


async def answering(servers: list[Server], *responses: bytes) -> Server:
    """A server that answers the n-th request on every connection with responses[n]."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for response in responses:
            if await server.request(reader) is None:
                return
            w.write(response)
            await w.drain()
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    return server


# -- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    ],
)
async def test_chunked_wins_over_content_length_and_the_connection_is_not_reused(
    transport: H1Transport, servers: list[Server], head: bytes
) -> None:
    """RFC 9112 6.3: chunked overrides content-length; such a message is suspect, so no reuse."""
    response = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    server = await answering(servers, response, response)
    assert await (await post(transport, server.url)).read() == b"hello world"
    assert await (await post(transport, server.url)).read() == b"hello world"
    assert server.connections == 2


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 2\r\nContent-Length: 3\r\n",
        b"Content-Length: 2, 2\r\n",
        b"Content-Length: abc\r\n",
        b"Content-Length: -2\r\n",
        b"Content-Length: 2\r\nContent-Length: 2\r\n",
    ],
)
async def test_invalid_or_repeated_content_length_is_a_connect_error(
    transport: H1Transport, servers: list[Server], head: bytes
) -> None:
    server = await answering(servers, b"HTTP/1.1 200 OK\r\n" + head + b"\r\nok")
    with pytest.raises(ConnectError) as caught:
        await post(transport, server.url)
    assert_discreet(caught.value)
    assert transport.open_count() == 0


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ],
)
async def test_bodyless_statuses_end_at_the_head_and_keep_the_connection(
    transport: H1Transport, servers: list[Server], response: bytes
) -> None:
    server = await answering(servers, response, OK)
    first = await post(transport, server.url)
    assert await first.read() == b""
    assert await (await post(transport, server.url)).read() == b"ok"
    assert server.connections == 1


async def test_100_continue_and_103_before_the_answer_are_skipped(
    transport: H1Transport, servers: list[Server]
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = await answering(servers, interim + OK, OK)
    response = await post(transport, server.url)
    assert (response.status, "link" in response.headers) == (200, False)
    assert await response.read() == b"ok"
    assert await (await post(transport, server.url)).read() == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize(
    ("response", "reused"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    ],
)
async def test_keep_alive_follows_the_version_and_connection_header(
    transport: H1Transport, servers: list[Server], response: bytes, reused: bool
) -> None:
    server = await answering(servers, response, response)
    for _ in range(2):
        assert await (await post(transport, server.url)).read() == b"ok"
    assert server.connections == (1 if reused else 2)


async def test_http_1_0_body_delimited_by_close(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await w.drain()
        w.close()

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"all of it"


async def test_transfer_coding_not_ending_in_chunked_is_read_until_close(
    transport: H1Transport, servers: list[Server]
) -> None:
    """RFC 9112 6.3: a response whose final transfer coding is not chunked ends at the close."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw bytes")
        await w.drain()
        w.close()

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"raw bytes"


# -- odd heads --------------------------------------------------------------------------------


async def test_obs_fold_latin_1_and_bare_lf_heads_are_read(
    transport: H1Transport, servers: list[Server]
) -> None:
    """What aiohttp accepts from servers: folded lines (unfolded), latin-1 values, LF endings."""
    folded = b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok"
    bare_lf = b"HTTP/1.1 200 OK\nX-Lf: yes\nContent-Length: 2\n\nok"
    server = await answering(servers, folded, bare_lf)
    response = await post(transport, server.url)
    assert await response.read() == b"ok"
    assert response.headers["x-folded"] == "one two"
    assert response.headers["x-name"] == "café"
    response = await post(transport, server.url)
    assert await response.read() == b"ok"
    assert response.headers["x-lf"] == "yes"


async def test_large_head_within_the_limit_is_read(
    transport: H1Transport, servers: list[Server]
) -> None:
    big = b"v" * (48 * 1024)
    server = await answering(
        servers, b"HTTP/1.1 200 OK\r\nX-Big: " + big + b"\r\nContent-Length: 2\r\n\r\nok"
    )
    response = await post(transport, server.url)
    assert response.headers["x-big"] == big.decode()
    assert await response.read() == b"ok"


async def test_endless_head_is_refused_without_buffering_it(
    transport: H1Transport, servers: list[Server]
) -> None:
    sent = 0

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal sent
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):
            while sent < 64 * 1024 * 1024:
                w.write(b"a" * 65536)
                await w.drain()
                sent += 65536

    server = await serving(handler)
    servers.append(server)
    with pytest.raises(ConnectError) as caught:
        await post(transport, server.url)
    assert_discreet(caught.value)
    assert sent < 16 * 1024 * 1024
    assert transport.open_count() == 0


# -- what comes after (or before) the response ------------------------------------------------


async def test_garbage_after_a_response_keeps_the_connection_out_of_the_pool(
    transport: H1Transport, servers: list[Server]
) -> None:
    server = await answering(servers, OK + b"garbage", OK)
    assert await (await post(transport, server.url)).read() == b"ok"
    assert await (await post(transport, server.url)).read() == b"ok"
    assert server.connections == 2


SECOND = b"HTTP/1.1 401 Unauthorized\r\nX-Second: 1\r\nContent-Length: 4\r\n\r\nnope"
CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("stream", "status", "body"),
    [
        (OK + SECOND, 200, b"ok"),
        (CHUNKED_OK + SECOND, 200, b"ok"),
        (b"HTTP/1.1 204 No Content\r\n\r\n" + SECOND, 204, b""),
        (OK + b"\r\n" + SECOND, 200, b"ok"),
        (OK + SECOND + SECOND, 200, b"ok"),
    ],
    ids=["length", "chunked", "bodyless", "crlf-between", "two-more"],
)
async def test_a_second_response_in_the_same_read_cannot_replace_the_first(
    transport: H1Transport, servers: list[Server], stream: bytes, status: int, body: bytes
) -> None:
    """HTTP/1.1 has no unsolicited responses: a hostile upstream must not turn its 200 into a
    401 (which would disable the key) by sending one after the answer, in the same write."""
    server = await answering(servers, stream)
    for _ in range(2):
        response = await post(transport, server.url)
        assert (response.status, "x-second" in response.headers) == (status, False)
        assert await response.read() == body
    assert server.connections == 2  # the first connection was dropped, never reused


async def test_a_second_response_after_the_first_in_a_later_read_is_dropped(
    transport: H1Transport, servers: list[Server]
) -> None:
    """Before the caller read the body: the answer stands as read, the connection is closed."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(OK)
        await w.drain()
        await asyncio.sleep(0.02)
        w.write(SECOND)
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    response = await post(transport, server.url)
    await poll(lambda: server.closed_by_client == 1)  # the client hung up on the second answer
    assert (response.status, await response.read()) == (200, b"ok")
    assert transport.open_count() == 0


async def test_bytes_on_an_idle_connection_close_it(
    transport: H1Transport, servers: list[Server]
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)
            await w.drain()
            if index == 0:
                await asyncio.sleep(0.02)
                w.write(OK)  # an answer nobody asked for, while the connection is idle

    server = await serving(handler)
    servers.append(server)
    assert await (await post(transport, server.url)).read() == b"ok"
    await poll(lambda: transport.idle_count() == 0)
    assert await (await post(transport, server.url)).read() == b"ok"
    assert server.connections == 2


async def test_early_answer_then_close_surfaces_the_answer_or_a_connect_error(
    transport: H1Transport, servers: list[Server]
) -> None:
    """A server refuses a large body after its head (413) and closes; the client never hangs."""

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.head(reader)
        w.write(b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
        await w.drain()
        w.close()

    server = await serving(handler)
    servers.append(server)
    body = b"x" * (32 * 1024 * 1024)
    for _ in range(3):
        try:
            response = await post(transport, server.url, body=body)
        except ConnectError as exc:
            assert_discreet(exc)
        else:
            assert response.status == 413
            with contextlib.suppress(StreamCut):
                assert await response.read() == b"big"
    await poll(lambda: transport.open_count() == 0)


async def test_early_answer_on_keep_alive_then_the_rest_of_the_body_is_sent(
    transport: H1Transport, servers: list[Server]
) -> None:
    """A server may answer before reading the body and then drain it (RFC 9112 9.3)."""
    body = b"x" * (8 * 1024 * 1024)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (head := await server.head(reader)) is not None:
            w.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")
            await w.drain()
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)  # drain the body it refused

    server = await serving(handler)
    servers.append(server)
    for _ in range(2):
        response = await post(transport, server.url, body=body)
        assert (response.status, await response.read()) == (413, b"big")
    assert server.connections == 1
