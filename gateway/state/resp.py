"""A minimal auto-pipelining Redis connection for the hot path: EVALSHA, SCRIPT LOAD, PING.

Why not redis-py for these: on this kind of machine a socket write costs ~100 µs, and redis-py
spends 60-110 µs of CPU per call besides (connection pool, retry wrapper, command packing). Here
every command issued during one event-loop iteration leaves in ONE write; replies come back in
order on one connection and resolve their futures FIFO (Redis answers in order). Under load, the
scripts of many concurrent requests share a syscall.

It raises redis-py's own exception classes, so `SharedState` treats both clients alike. Plain
TCP only (`redis://`); TLS, Sentinel, Cluster and the embedded store use redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["PipelinedRedis"]


def _pack(args: tuple[Any, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(args)
    return packed


class _Protocol(asyncio.Protocol):
    """One connection: a write buffer flushed once per loop iteration, replies matched FIFO."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader(encoding="utf-8")
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            reply = self._reader.gets()
            if reply is False:
                return
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionError("connection to redis lost"))

    def _fail(self, error: Exception) -> None:
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append((future, time.monotonic()))
        self._out.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is None or self.closed:
            self._fail(RedisConnectionError("connection to redis lost"))
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self.transport.write(data)

    def oldest_wait(self) -> float:
        return time.monotonic() - self._waiting[0][1] if self._waiting else 0.0

    def abort(self, error: Exception) -> None:
        self.closed = True
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()


class PipelinedRedis:
    """The subset of the redis-py client SharedState uses, over one auto-pipelined connection."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        self._db = int(path) if path else 0
        self._timeout_s = timeout_s
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def _connection(self) -> _Protocol:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            conn = await self._open(loop)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
            self._connecting.set_exception(failure)
            self._connecting.exception()  # mark retrieved
            self._connecting = None
            raise
        self._conn = conn
        self._connecting.set_result(conn)
        self._connecting = None
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch())
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        try:
            async with asyncio.timeout(self._timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Protocol(loop), self._host, self._port
                )
                setup: list[asyncio.Future[Any]] = []
                if self._password is not None:
                    auth: tuple[str, ...] = ("AUTH", self._password)
                    if self._username:
                        auth = ("AUTH", self._username, self._password)
                    setup.append(conn.send(_pack(auth)))
                if self._db:
                    setup.append(conn.send(_pack(("SELECT", str(self._db)))))
                for reply in await asyncio.gather(*setup):
                    if isinstance(reply, hiredis.ReplyError):
                        conn.abort(RedisConnectionError("redis refused the connection setup"))
                        raise RedisConnectionError(f"redis connection setup: {reply}")
        except TimeoutError as exc:
            raise RedisTimeoutError("connecting to redis timed out") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc.strerror}") from exc
        return conn

    async def _watch(self) -> None:
        """One timer for all calls: a reply overdue by the timeout closes the connection."""
        period = max(0.01, self._timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            conn = self._conn
            if conn is not None and not conn.closed and conn.oldest_wait() > self._timeout_s:
                conn.abort(RedisTimeoutError("redis did not answer in time"))

    async def execute(self, *args: Any) -> Any:
        conn = await self._connection()
        reply = await conn.send(_pack(args))
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.startswith("NOSCRIPT"):
                raise NoScriptError(text)
            raise ResponseError(text)
        return reply

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, source: str) -> str:
        return str(await self.execute("SCRIPT", "LOAD", source))

    async def ping(self) -> bool:
        return bool(await self.execute("PING") == "PONG")

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._conn is not None:
            self._conn.abort(RedisConnectionError("client closed"))
