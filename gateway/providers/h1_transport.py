"""The `h1` upstream transport: HTTP/1.1 on asyncio.Protocol and httptools, and nothing else.

Every provider Keyway talks to speaks HTTP/1.1 with keep-alive; the request is a few hundred
bytes of headers and a body that is already bytes, and the response is relayed as bytes. A
general client (aiohttp) spends most of its per-request time on what Keyway never uses:
request/response objects, header multidicts, payload registries, cookie jars, tracing hooks,
decompression, redirects. This one does the minimum, in this order:

1. the URL is split once and cached (origin, ``host`` header, request target: `h1_request`);
2. the request line, headers, framing and body become ONE bytes object and ONE write;
3. a pooled connection is reused (LIFO, so the pool shrinks back under less load), or one is
   opened within ``connect_timeout_s`` (which includes waiting for a free slot: a wait that
   runs out is `PoolExhausted`, the gateway's own capacity, not a connect failure);
4. `H1Connection` parses the response with llhttp (C) and hands body pieces over as they come
   to the `H1Response` (`h1_response`), which gives the connection back or closes it.

Pool: at most `max_connections` connections across all origins (busy plus idle). An idle
connection expires after `idle_timeout_s` (checked when it is taken and by a sweep timer); when
the pool is full, an idle connection to another origin is closed to make room, otherwise the
request waits for a slot. A connection goes back to the pool only after its response was read
to the end and the server allowed keep-alive; an abandoned, cut or timed-out exchange closes it,
and so does a response followed by any byte the client did not ask for. After `aclose`, a
connection that was still being opened is closed when its exchange ends.

A ``deadline`` bounds the whole exchange whatever trickles in: the pool wait and the connect
(``connect_timeout_s`` or what is left of the deadline, the shorter), the head, then `read`
(`H1Connection.limit_to`). A host that resolves to several addresses is tried address by
address; each but the last gets an equal share of the connect time left, so an address that
never answers (a blackholed IPv6 route, a dead replica behind round-robin DNS) cannot take it
all (not happy eyeballs: one attempt at a time, in the resolver's order).

A server may close a keep-alive connection just as a request is written to it (its idle timeout
raced our reuse). When a REUSED connection dies before any byte of the response arrived, and
within `STALE_RETRY_WINDOW_S` of the write, the request is sent once more on a new connection:
that race shows at once (a reset or EOF answering the write), while a connection that dies
later was probably processing the request, and an LLM call must not run (and bill) twice. The
residual risk (a server that crashed within that second after reading the request) is one
repeated call. A fresh connection, a timeout or a partial response is never retried.

TLS uses the event loop's ssl support with ``ssl.create_default_context()`` (certificate and
hostname verification, SNI from the URL's host) unless an `ssl_context` is given. Proxies from
the environment are ignored. DNS is the loop's resolver, its answer kept for 30 s and shared
by concurrent connects (`h1_resolve`), as the aiohttp transport's DNS cache did; the addresses
the `address_policy` allows are tried in turn within ``connect_timeout_s``. ``HEAD`` is
supported but closes its connection afterwards.

Measured inside a minimal Litestar proxy (`loadtests/upstream_clients.py`, 5 interleaved
rounds on a shared 2-core VM, medians): at 32 connections h1 forwarded 9,526 JSON req/s
against aiohttp's 6,176 and 3,825 SSE streams/s against 2,807, at 101 vs 179 and 237 vs 322
µs of proxy CPU per request; paced streams are capped by the provider (1,224 vs 1,174/s) and
cost 582 vs 716 µs. It is `DEFAULT_KIND`.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Final

from gateway.providers.h1_connection import H1Connection
from gateway.providers.h1_request import encode_request, split_url
from gateway.providers.h1_resolve import Resolver
from gateway.providers.h1_response import H1Response
from gateway.providers.transport import (
    AddressPolicy,
    ConnectError,
    PoolExhausted,
    UpstreamTimeoutError,
)

__all__ = ["STALE_RETRY_WINDOW_S", "H1Response", "H1Transport"]

STALE_RETRY_WINDOW_S: Final = 1.0
"""A reused connection that dies before any response byte is retried only this soon after the write."""

_IDLE_TIMEOUT_S: Final = 30.0
_ROUTE_CACHE_LIMIT: Final = 1024


class _Origin:
    """Where connections go (scheme, host, port) and its idle connections, oldest first."""

    __slots__ = ("host", "host_header", "idle", "key", "port", "tls")

    def __init__(
        self, key: tuple[str, str, int], host: str, port: int, tls: bool, host_header: str
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.tls = tls
        self.host_header = host_header
        self.idle: list[H1Connection] = []


class H1Transport:
    """Sends upstream requests over pooled HTTP/1.1 connections (at most `max_connections`)."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        idle_timeout_s: float = _IDLE_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._routes: dict[str, tuple[_Origin, str]] = {}
        self._connections: set[H1Connection] = set()
        """Every open connection, busy or idle."""
        self._connecting = 0
        """Connections being opened; with `_connections`, what `max_connections` bounds."""
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._resolver = Resolver(policy=address_policy)

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
    ) -> H1Response:
        route = self._routes.get(url) or self._route(url)
        origin = route[0]
        request = encode_request(method, route[1], origin.host_header, headers, body)
        head_only = method == "HEAD"
        loop = self._bound_loop()
        limit = math.inf
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:  # before a connection is taken or a byte is written
                raise UpstreamTimeoutError("upstream exchange passed its deadline")
            limit = loop.time() + left
        conn = self._take_idle(origin) if origin.idle else None
        if conn is None:
            conn = await self._acquire(origin, _within(connect_timeout_s, limit, loop), fresh=False)
        written = loop.time()
        try:
            await conn.exchange(request, read_timeout_s, head_only, limit)
        except ConnectError:
            conn.close()
            if conn.exchanges < 2 or conn.got_bytes or loop.time() - written > STALE_RETRY_WINDOW_S:
                raise
            # a reused keep-alive connection died before any byte: the server closed it idle
            conn = await self._acquire(origin, _within(connect_timeout_s, limit, loop), fresh=True)
            try:
                await conn.exchange(request, read_timeout_s, head_only, limit)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        return H1Response(conn, self.put_idle)

    async def aclose(self) -> None:
        """Close every connection (busy ones too) and forget the pool; the transport stays usable."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._connections):
            conn.close()
        self._origins.clear()
        self._routes.clear()
        self._resolver.clear()
        self._loop = None

    def put_idle(self, conn: H1Connection) -> None:
        """Keep a connection whose exchange ended cleanly, for the next request to its origin."""
        origin = conn.origin
        assert isinstance(origin, _Origin)
        if self._loop is None or self._origins.get(origin.key) is not origin:
            conn.close()  # opened before `aclose`: that pool is gone
            return
        conn.idle_since = self._loop.time()
        origin.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self._idle_timeout_s, self._sweep)
        if self._slot_waiters:
            self._wake_slot_waiter()

    def idle_count(self) -> int:
        """Idle connections that are still open (for tests and diagnostics)."""
        return sum(1 for o in self._origins.values() for c in o.idle if not c.closed)

    def open_count(self) -> int:
        """Open connections, busy or idle."""
        return len(self._connections)

    # -- the pool -----------------------------------------------------------------------------

    def _take_idle(self, origin: _Origin) -> H1Connection | None:
        """The most recently used live idle connection of `origin`; expired ones are closed."""
        idle = origin.idle
        assert self._loop is not None
        oldest_allowed = self._loop.time() - self._idle_timeout_s
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.idle_since < oldest_allowed:  # LIFO: every one below is older still
                conn.close()
                for older in idle:
                    older.close()
                idle.clear()
                return None
            return conn
        return None

    async def _acquire(self, origin: _Origin, timeout_s: float, *, fresh: bool) -> H1Connection:
        """An idle connection of `origin` (unless `fresh`) or a new one, within `timeout_s`.

        Time out waiting for a slot: `PoolExhausted` (nothing was sent; the pool is the
        gateway's); time out connecting: `UpstreamTimeoutError`.
        """
        if timeout_s <= 0:
            raise UpstreamTimeoutError("upstream exchange passed its deadline")
        until = self._bound_loop().time() + timeout_s
        waiting = False
        try:
            async with asyncio.timeout_at(until):
                while True:
                    if not fresh and origin.idle:
                        conn = self._take_idle(origin)
                        if conn is not None:
                            return conn
                    if self._has_slot() or self._evict_idle():
                        return await self._connect(origin, until)
                    waiting = True
                    await self._wait_for_slot()
                    waiting = False
        except TimeoutError as exc:
            if waiting:
                raise PoolExhausted("no upstream connection slot came free in time") from exc
            raise UpstreamTimeoutError("upstream connect timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS verification (ssl.SSLError)
            raise ConnectError(f"upstream connection failed ({type(exc).__name__})") from exc

    async def _connect(self, origin: _Origin, until: float) -> H1Connection:
        loop = self._bound_loop()
        self._connecting += 1
        try:
            conn = await self._open(loop, origin, until)
        except BaseException:
            self._connecting -= 1
            if self._slot_waiters:
                self._wake_slot_waiter()  # the slot this attempt held is free again
            raise
        self._connecting -= 1
        self._connections.add(conn)
        if conn.closed:  # lost before it was registered: _drop already ran
            self._connections.discard(conn)
        return conn

    async def _open(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, until: float
    ) -> H1Connection:
        """Connect to the origin's addresses in turn (one lookup shared by every connect).

        Each address but the last may take an equal share of the time left before `until` (loop
        time); the last takes the rest, bounded by the caller's timeout.
        """
        addresses = await self._resolver.resolve(origin.host, origin.port)
        error: OSError = ConnectionError("no address")
        try:
            for index, address in enumerate(addresses):
                after = len(addresses) - index - 1
                try:
                    if not after:
                        return await self._dial(loop, origin, address)
                    async with asyncio.timeout((until - loop.time()) / (after + 1)):
                        return await self._dial(loop, origin, address)
                except ssl.SSLError:
                    raise
                except OSError as exc:  # refused, unreachable, or its share ran out (TimeoutError)
                    error = exc
            raise error
        except ssl.SSLError:
            raise  # the certificate is the host's, not one address's
        except BaseException:  # refused, unreachable or too slow: the answer may be stale
            self._resolver.forget(origin.host, origin.port)
            raise

    async def _dial(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, address: str
    ) -> H1Connection:
        _, conn = await loop.create_connection(
            partial(H1Connection, loop, origin, self._drop),
            address,
            origin.port,
            ssl=self._tls() if origin.tls else None,
            server_hostname=origin.host if origin.tls else None,
        )
        return conn

    def _has_slot(self) -> bool:
        return len(self._connections) + self._connecting < self._max_connections

    async def _wait_for_slot(self) -> None:
        """Until a connection closes or goes idle (then look again)."""
        waiter = self._bound_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_slot_waiter()  # woken and cancelled at once: pass the wake on
            raise

    def _drop(self, conn: H1Connection) -> None:
        """A connection closed: its slot is free."""
        self._connections.discard(conn)
        if self._slot_waiters:
            self._wake_slot_waiter()

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection of any origin to make room; False if none is idle."""
        for origin in self._origins.values():
            while origin.idle:
                conn = origin.idle.pop(0)
                if not conn.closed:
                    conn.close()
                    return True
        return False

    def _wake_slot_waiter(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close idle connections past `idle_timeout_s`; runs while any connection is idle."""
        self._sweeper = None
        loop = self._bound_loop()
        oldest_allowed = loop.time() - self._idle_timeout_s
        remaining = False
        for origin in self._origins.values():
            keep = []
            for conn in origin.idle:
                if conn.closed:
                    continue
                if conn.idle_since < oldest_allowed:
                    conn.close()
                else:
                    keep.append(conn)
            origin.idle[:] = keep
            remaining = remaining or bool(keep)
        if remaining:
            self._sweeper = loop.call_later(self._idle_timeout_s, self._sweep)

    # -- setup --------------------------------------------------------------------------------

    def _bound_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    def _route(self, url: str) -> tuple[_Origin, str]:
        """Split `url` into its origin (shared by every URL of it) and the request target."""
        self._bound_loop()
        parts = split_url(url)
        key = (parts.scheme, parts.host, parts.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = _Origin(
                key, parts.host, parts.port, parts.scheme == "https", parts.host_header
            )
            self._origins[key] = origin
        if len(self._routes) >= _ROUTE_CACHE_LIMIT:
            self._routes.clear()
        route = self._routes[url] = (origin, parts.target)
        return route


def _within(timeout_s: float, limit: float, loop: asyncio.AbstractEventLoop) -> float:
    """`timeout_s`, or what is left before `limit` (loop time) when that is shorter."""
    if limit == math.inf:
        return timeout_s
    return min(timeout_s, limit - loop.time())
