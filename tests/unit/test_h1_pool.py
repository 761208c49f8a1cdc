"""The `h1` pool under cancellation, failing connects, aclose and the stale-connection retry.

The invariant every test ends on: no slot leaked (busy plus connecting plus idle stays within
`max_connections` and falls back to what is really open), no waiter left behind, and the pool
still serves `max_connections` requests at once afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.providers.h1_transport import H1Transport
from gateway.providers.transport import (
    ConnectError,
    PoolExhausted,
    TransportError,
    UpstreamTimeoutError,
)
from tests.unit.h1_harness import (
    OK,
    HeldTLSServer,
    Server,
    poll,
    post,
    self_signed,
    server_tls_context,
    serving,
)

__all__: list[str] = []


async def keep_alive_server(servers: list[Server]) -> Server:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    return server


async def assert_pool_whole(transport: H1Transport, servers: list[Server], size: int) -> None:
    """Nothing busy, connecting or waiting; `size` requests can be in flight at once."""
    await poll(lambda: not any(conn.active for conn in transport._connections))
    assert transport._connecting == 0
    assert not [w for w in transport._slot_waiters if not w.done()]
    assert transport.open_count() <= size
    arrived = 0
    all_in = asyncio.Event()

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal arrived
        while await barrier.request(reader) is not None:
            arrived += 1
            if arrived == size:
                all_in.set()
            await all_in.wait()  # answers only once `size` requests are in flight together
            w.write(OK)

    barrier = await serving(handler)
    servers.append(barrier)
    calls = [post(transport, barrier.url, connect_s=5.0) for _ in range(size)]
    responses = await asyncio.gather(*calls)
    assert [await r.read() for r in responses] == [b"ok"] * size


async def test_many_cancellations_at_every_await_leave_the_pool_whole(
    servers: list[Server], tmp_path: Path
) -> None:
    """Waiting for a slot, connecting, TLS handshake, headers, mid-body: cancel anywhere."""
    rng = random.Random(7)
    cert, key = self_signed(tmp_path)

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            await asyncio.sleep(rng.random() * 0.01)
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                await asyncio.sleep(rng.random() * 0.005)
                w.write(b"3\r\nabc\r\n")
            w.write(b"0\r\n\r\n")

    server = await serving(handler)
    tls = await serving(handler, server_tls_context(cert, key))
    servers.extend((server, tls))
    size = 4
    transport = H1Transport(
        max_connections=size, ssl_context=ssl.create_default_context(cafile=str(cert))
    )
    urls = [server.url, f"https://localhost:{tls.port}/v1/chat"]

    async def one(i: int) -> None:
        with contextlib.suppress(TimeoutError, TransportError):
            async with asyncio.timeout(rng.random() * 0.04):
                response = await post(transport, urls[i % 2], connect_s=5.0)
                if i % 3:
                    async for _ in response.iter_bytes():
                        pass
                else:
                    await response.read()

    try:
        for wave in range(25):  # 3 requests per slot, about a third finish, the rest are cut
            tasks = [asyncio.create_task(one(wave * 12 + i)) for i in range(12)]
            tasks[wave % 12].cancel()  # before it starts
            await asyncio.sleep(rng.random() * 0.02)
            tasks[(wave + 5) % 12].cancel()  # wherever it is by now
            await asyncio.gather(*tasks, return_exceptions=True)
            assert not any(conn.active for conn in transport._connections)
            assert (transport._connecting, transport.open_count() <= size) == (0, True)
        await assert_pool_whole(transport, servers, size)
    finally:
        await transport.aclose()


async def test_woken_and_cancelled_at_once_passes_the_slot_on(servers: list[Server]) -> None:
    server = await keep_alive_server(servers)
    transport = H1Transport(max_connections=1)
    try:
        first = await post(transport, server.url)
        second = asyncio.create_task(post(transport, server.url))
        third = asyncio.create_task(post(transport, server.url))
        await asyncio.sleep(0.01)
        assert len(transport._slot_waiters) == 2
        await first.read()  # back in the pool: wakes `second`...
        second.cancel()  # ...which is cancelled before it runs
        assert await (await third).read() == b"ok"
        assert second.cancelled()
        await assert_pool_whole(transport, servers, 1)
    finally:
        await transport.aclose()


async def stalled_tls_server(
    servers: list[Server], tmp_path: Path, release: asyncio.Event, failing: int
) -> tuple[Server, ssl.SSLContext]:
    """Connections below `failing` hang before the TLS handshake until `release`, then reset;
    later ones handshake and answer with keep-alive."""
    cert, key = self_signed(tmp_path)

    async def hold(index: int) -> bool:
        if index < failing:
            await release.wait()
            return False
        return True

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = HeldTLSServer(handler, server_tls_context(cert, key), hold)
    await server.start()
    servers.append(server)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_connect_failure_wakes_a_request_waiting_for_the_slot(
    servers: list[Server], tmp_path: Path
) -> None:
    release = asyncio.Event()
    server, trusting = await stalled_tls_server(servers, tmp_path, release, failing=1)
    transport = H1Transport(max_connections=1, ssl_context=trusting)
    url = f"https://localhost:{server.port}/v1/chat"
    try:
        first = asyncio.create_task(post(transport, url, connect_s=5.0))
        await poll(lambda: server.connections == 1)
        waiting = [asyncio.create_task(post(transport, url, connect_s=5.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in waiting)
        release.set()
        with pytest.raises(ConnectError):
            await first
        assert [await (await task).read() for task in waiting] == [b"ok"] * 3
        assert server.connections == 2  # the failed one, then one reused by all three
        await assert_pool_whole(transport, servers, 1)
    finally:
        await transport.aclose()


async def test_connect_timeout_covers_the_tls_handshake_and_frees_the_slot(
    servers: list[Server], tmp_path: Path
) -> None:
    release = asyncio.Event()
    server, trusting = await stalled_tls_server(servers, tmp_path, release, failing=2)
    transport = H1Transport(max_connections=1, ssl_context=trusting)
    url = f"https://localhost:{server.port}/v1/chat"
    try:
        with pytest.raises(UpstreamTimeoutError):
            await post(transport, url, connect_s=0.2)
        with pytest.raises(TimeoutError):  # the caller's own deadline, mid-handshake
            async with asyncio.timeout(0.2):
                await post(transport, url, connect_s=5.0)
        assert (transport._connecting, transport.open_count()) == (0, 0)
        assert await (await post(transport, url)).read() == b"ok"
    finally:
        release.set()
        await transport.aclose()


async def test_the_deadline_bounds_the_connect_when_it_is_the_shorter(
    servers: list[Server], tmp_path: Path
) -> None:
    release = asyncio.Event()
    server, trusting = await stalled_tls_server(servers, tmp_path, release, failing=1)
    transport = H1Transport(max_connections=1, ssl_context=trusting)
    url = f"https://localhost:{server.port}/v1/chat"
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError):  # the handshake never starts
            await transport.send(
                "POST",
                url,
                [],
                b"{}",
                connect_timeout_s=5,
                read_timeout_s=5,
                deadline=started + 0.2,
            )
        assert time.monotonic() - started < 1.0
        assert (transport._connecting, transport.open_count()) == (0, 0)
    finally:
        release.set()
        await transport.aclose()


async def test_no_free_slot_before_the_deadline_is_pool_exhausted(servers: list[Server]) -> None:
    """A slot that does not come free is the gateway's capacity, whichever bound ran out."""
    release = asyncio.Event()

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            await release.wait()
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(max_connections=1)
    try:
        held = asyncio.create_task(post(transport, server.url))
        await poll(lambda: server.requests == 1)
        started = time.monotonic()
        with pytest.raises(PoolExhausted):
            await transport.send(
                "POST",
                server.url,
                [],
                b"{}",
                connect_timeout_s=5,
                read_timeout_s=5,
                deadline=started + 0.1,
            )
        assert time.monotonic() - started < 1.0
        release.set()
        assert await (await held).read() == b"ok"
        await assert_pool_whole(transport, servers, 1)
    finally:
        await transport.aclose()


class FixedAnswer:
    """Stands in for the transport's resolver: every host resolves to `addresses`."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.forgotten = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        return list(self.addresses)

    def forget(self, host: str, port: int) -> None:
        self.forgotten += 1

    def clear(self) -> None:
        pass


@contextlib.contextmanager
def dead_address(address: str, port: int, *, silent: bool) -> Iterator[None]:
    """`address:port` refuses connections, or (`silent`) never answers them: a listener whose
    accept queue is full drops every SYN, as a blackholed route does."""
    if not silent:
        yield
        return
    listener = socket.create_server((address, port), backlog=0)
    filler = socket.create_connection((address, port), timeout=1)  # fills the accept queue
    try:
        yield
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize("silent", [False, True], ids=["refusing", "silent"])
async def test_a_host_with_several_addresses_falls_back_to_the_next(
    servers: list[Server], silent: bool
) -> None:
    """Round-robin DNS or IPv6 + IPv4: a dead first address must not fail the connect, and a
    silent one gets only its share of the connect timeout."""
    server = await keep_alive_server(servers)  # on 127.0.0.1
    transport = H1Transport()
    resolver = FixedAnswer("127.0.0.2", "127.0.0.1")
    transport._resolver = resolver  # type: ignore[assignment]
    url = f"http://api.example.test:{server.port}/v1/chat"
    try:
        with dead_address("127.0.0.2", server.port, silent=silent):
            started = time.monotonic()
            response = await post(transport, url, connect_s=1.0)
            assert await response.read() == b"ok"
            assert time.monotonic() - started < 0.9  # a silent address took half, not all
        assert (server.connections, resolver.forgotten) == (1, 0)
        await assert_pool_whole(transport, servers, 4)
    finally:
        await transport.aclose()


async def test_every_address_failing_is_one_connect_error(servers: list[Server]) -> None:
    server = await keep_alive_server(servers)
    port = server.port
    await server.stop()
    servers.remove(server)
    transport = H1Transport()
    resolver = FixedAnswer("127.0.0.2", "127.0.0.1")
    transport._resolver = resolver  # type: ignore[assignment]
    try:
        with dead_address("127.0.0.2", port, silent=True):
            started = time.monotonic()
            with pytest.raises(ConnectError):  # the last address's answer: refused
                await post(transport, f"http://api.example.test:{port}/", connect_s=1.0)
            assert time.monotonic() - started < 0.9
        assert resolver.forgotten == 1  # the answer may be stale: looked up again next time
    finally:
        await transport.aclose()


async def test_aclose_while_connecting_does_not_pool_the_late_connection(
    servers: list[Server], tmp_path: Path
) -> None:
    release = asyncio.Event()
    cert, key = self_signed(tmp_path)

    async def hold(index: int) -> bool:
        return await release.wait()

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = HeldTLSServer(handler, server_tls_context(cert, key), hold)
    await server.start()
    servers.append(server)
    transport = H1Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
    call = asyncio.create_task(post(transport, f"https://localhost:{server.port}/v1/chat"))
    await poll(lambda: server.connections == 1)
    await transport.aclose()  # shutdown while the handshake is under way
    release.set()
    response = await call
    assert await response.read() == b"ok"
    await poll(lambda: server.closed_by_client == 1)  # closed, not kept for a forgotten pool
    assert transport.open_count() == 0
    await transport.aclose()


async def test_retry_on_a_stale_connection_happens_once(servers: list[Server]) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            if index == 0 and server.requests == 1:
                w.write(OK)
                continue
            return  # the stale connection, then its replacement, die without a byte

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport()
    try:
        assert await (await post(transport, server.url)).read() == b"ok"
        with pytest.raises(ConnectError):
            await post(transport, server.url)
        assert (server.connections, server.requests) == (2, 3)
    finally:
        await transport.aclose()


async def test_idle_expiry_does_not_touch_a_connection_in_use(servers: list[Server]) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")
            await w.drain()
            await asyncio.sleep(0.3)  # in use for longer than the idle timeout
            w.write(b"k")

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(idle_timeout_s=0.1)
    try:
        for _ in range(2):
            assert await (await post(transport, server.url)).read() == b"ok"
        assert server.connections == 1
    finally:
        await transport.aclose()


async def test_a_response_dropped_without_aclose_frees_its_connection(
    servers: list[Server],
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await server.until_client_closes(reader)

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(max_connections=1)
    try:
        response = await post(transport, server.url)
        del response  # a caller bug: never read, never closed
        await poll(lambda: server.closed_by_client == 1)
        assert transport.open_count() == 0
    finally:
        await transport.aclose()


class LookupSpy:
    """Counts (and may slow down) the loop's getaddrinfo for one host; asyncio's loop only
    (uvloop's create_connection resolves inside C, where nothing can be counted)."""

    def __init__(self, host: str, delay_s: float = 0.0) -> None:
        self.loop = asyncio.get_running_loop()
        if not isinstance(self.loop, asyncio.BaseEventLoop):
            pytest.skip("counting lookups needs asyncio's own event loop")
        self.host = host
        self.delay_s = delay_s
        self.calls = 0
        self._real = self.loop.getaddrinfo

    async def _spy(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == self.host:
            self.calls += 1
            await asyncio.sleep(self.delay_s)
        return await self._real(host, *args, **kwargs)

    def __enter__(self) -> LookupSpy:
        self.loop.getaddrinfo = self._spy  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.getaddrinfo


async def test_a_burst_of_new_connections_looks_the_host_up_once(servers: list[Server]) -> None:
    """As aiohttp's DNS cache did: a cold start under load must not queue one getaddrinfo per
    connection on the resolver's few threads (and, in Kubernetes, several queries each)."""
    all_in = asyncio.Event()

    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            if server.requests == 20:
                all_in.set()
            await all_in.wait()
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    transport = H1Transport(max_connections=20)
    url = f"http://localhost:{server.port}/v1/chat"
    try:
        with LookupSpy("localhost", delay_s=0.05) as spy:
            responses = await asyncio.gather(*(post(transport, url) for _ in range(20)))
            assert [await r.read() for r in responses] == [b"ok"] * 20
            assert (server.connections, spy.calls) == (20, 1)
    finally:
        await transport.aclose()


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup(
    servers: list[Server],
) -> None:
    server = await keep_alive_server(servers)
    transport = H1Transport()
    url = f"http://localhost:{server.port}/v1/chat"
    try:
        with LookupSpy("localhost", delay_s=0.2) as spy:
            impatient = asyncio.create_task(post(transport, url, connect_s=0.05))
            patient = asyncio.create_task(post(transport, url))
            with pytest.raises(UpstreamTimeoutError):
                await impatient
            assert await (await patient).read() == b"ok"
            assert spy.calls == 1
    finally:
        await transport.aclose()


async def test_an_answer_whose_addresses_all_refuse_is_looked_up_again(
    servers: list[Server],
) -> None:
    server = await keep_alive_server(servers)
    port = server.port
    await server.stop()
    servers.remove(server)
    transport = H1Transport()
    url = f"http://localhost:{port}/v1/chat"
    try:
        with LookupSpy("localhost") as spy:
            for _ in range(2):
                with pytest.raises(ConnectError):
                    await post(transport, url)
            assert spy.calls == 2  # a moved host is found again at once, not after the TTL
    finally:
        await transport.aclose()
