"""One HTTP/1.1 client connection for the `h1` transport: an asyncio.Protocol fed to httptools.

A connection runs one exchange at a time: `exchange` writes the whole request in one call and
returns once the status line and headers are parsed; the response then takes body pieces with
`take` / `wait_body` until `complete`. Everything the event loop reports (bytes, EOF, loss) only
updates plain attributes and wakes the one waiting coroutine; the waiting side turns the state
into the seam's exceptions. The pool that owns the connection (`h1_transport.H1Transport`)
decides when it is reused.

Why the pieces look the way they do:

- Parsing is llhttp (through httptools), in C: content-length, chunked (extensions, trailers)
  and HTTP/1.0-style bodies. It is as lenient as aiohttp's response parser (obs-fold, bare LF,
  spaces after a chunk size, any octet in a value) because providers sit behind all kinds of
  proxies; and when chunked and content-length both frame a response, chunked wins (RFC 9112
  6.3) but the connection is not reused, as the two disagreeing is how responses are smuggled.
- llhttp cannot be told that a body ends at EOF (httptools exposes no ``finish``), so the
  framing is read from the head once (`_until_close`): a response with neither content-length
  nor a transfer coding ending in chunked is complete when the server closes, anything else
  cut short by a close is cut.
- A head (with any 1xx before it) larger than `_MAX_HEAD` is refused: a broken or hostile
  server must not make the gateway buffer without bound before the first body byte.
- Read timeouts are per wait but cost no timer per wait: one timer per connection, re-armed
  lazily. Each wait moves a deadline forward; when the timer fires early (the deadline moved),
  it re-schedules itself at the new deadline instead of timing out. A stream of many small
  chunks therefore creates a timer once per read-timeout period, not once per chunk. Bytes of
  the head move the deadline too: a wait ends only when the server went silent for the whole
  read timeout, as with aiohttp's ``sock_read``.
- So a server trickling a byte just often enough would hold an exchange forever; the exchange
  also has a hard limit (`limit_to`, from the caller's deadline) that no byte moves: the read
  deadline never goes past it, and every wait checks it first (a fast stream may keep the
  waiter woken each time the timer runs).
- HTTP/1.1 has no unsolicited responses: a byte after the complete response (a second response
  in the same read, pipelined junk) is a protocol error. The first response stands as read,
  the connection is closed (never reused), and nothing after it reaches the parser state the
  response was built from, so a hostile server cannot turn its 200 into a 401 afterwards.
- Closing is ``abort``: an abandoned exchange must stop at once on the wire, not flush the rest
  of a request body the server is not reading, nor (TLS) wait for the peer's close_notify.
- Back-pressure: body bytes the consumer has not taken are kept as a list of pieces; above
  `_HIGH_WATER` bytes the socket stops being read (``pause_reading``) until the consumer takes
  them, so a slow client of a fast upstream does not buffer the whole answer in the gateway.
- `got_bytes` records whether any byte of the response arrived: the pool retries a request
  once on a fresh connection only when a reused keep-alive connection died without a byte.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Final, cast

import httptools

from gateway.providers.transport import ConnectError, StreamCut, UpstreamTimeoutError

__all__ = ["H1Connection"]

_HIGH_WATER: Final = 256 * 1024
"""Unconsumed body bytes above which the socket is paused."""
_TIMER_SLACK_S: Final = 0.001
"""asyncio may run a timer up to one clock tick early; treat that as on time."""
_MAX_HEAD: Final = 128 * 1024
"""Bytes of a response head (1xx included) past which it is refused, as curl does (100 KB)."""
_PAST_DEADLINE: Final = "upstream exchange passed its deadline"
_LENIENCIES: Final = {
    "lenient_headers": True,
    "lenient_optional_cr_before_lf": True,
    "lenient_spaces_after_chunk_size": True,
    "lenient_chunked_length": True,
}


class _UnaskedResponse(Exception):
    """A second response began after the complete one: stops the parser (feed_data raises)."""


class H1Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection and the state of its current exchange."""

    __slots__ = (
        "_deadline",
        "_dropped",
        "_head_bytes",
        "_informational",
        "_limit",
        "_loop",
        "_on_drop",
        "_parser",
        "_read_timeout",
        "_timer",
        "_timer_at",
        "_transport",
        "_until_close",
        "_waiter",
        "active",
        "body",
        "buffered",
        "closed",
        "complete",
        "exchanges",
        "failure",
        "got_bytes",
        "head_only",
        "headers_done",
        "idle_since",
        "origin",
        "paused",
        "raw_headers",
        "reusable",
        "status",
        "timed_out",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: object,
        on_drop: Callable[[H1Connection], None],
    ) -> None:
        self._loop = loop
        self.origin = origin
        """The pool's key for where this connection goes."""
        self._on_drop = on_drop
        self._dropped = False
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(**_LENIENCIES)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._limit = math.inf
        """Loop time the exchange must be over by (the caller's deadline); no byte moves it."""
        self._read_timeout = 0.0
        self._informational = False
        self._head_bytes = 0
        self._until_close = False
        self.closed = False
        self.exchanges = 0
        """Requests written on this connection; above 1 it is a reused keep-alive connection."""
        self.idle_since = 0.0
        self.active = False
        self.head_only = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.reusable = True
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.got_bytes = False
        self.failure: str | None = None
        """Why the connection failed mid-exchange (a short fixed phrase, never data)."""
        self.timed_out = False

    # -- the exchange, driven by the pool and the response ------------------------------------

    async def exchange(
        self, request: bytes, read_timeout_s: float, head_only: bool, limit: float = math.inf
    ) -> None:
        """Write `request` and return once the status line and headers have arrived.

        `limit`: the loop time the whole exchange must end by (see `limit_to`).
        """
        if self.closed or self._transport is None:
            raise ConnectError("upstream connection failed (closed before the request)")
        self._limit = limit
        self.exchanges += 1
        self.active = True
        self.head_only = head_only
        self.status = 0
        self.raw_headers = []
        self.headers_done = self.complete = self.got_bytes = self.timed_out = False
        self.failure = None
        self._head_bytes = 0
        self._read_timeout = read_timeout_s
        self._transport.write(request)
        while not self.headers_done:
            if self.failure is not None:
                raise ConnectError(f"upstream connection failed ({self.failure})")
            if self.timed_out:
                raise UpstreamTimeoutError(self._why_late("upstream did not answer in time"))
            await self._wait()

    def limit_to(self, deadline: float | None) -> None:
        """Bound what is left of the exchange by `deadline` (`time.monotonic`); None: unbounded."""
        self._limit = (
            math.inf if deadline is None else self._loop.time() + (deadline - time.monotonic())
        )

    def past_limit(self) -> bool:
        """Whether the exchange's limit has passed (checked where no wait would notice)."""
        return self._limit != math.inf and self._loop.time() >= self._limit

    def take(self) -> bytes:
        """Everything of the body that arrived and was not taken yet (one piece, or joined)."""
        body = self.body
        chunk = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.buffered = 0
        if self.paused:
            self.paused = False
            if self._transport is not None and not self.closed:
                self._transport.resume_reading()
        return chunk

    async def wait_body(self) -> None:
        """Wait for more body (or its end); raise when the connection failed or went silent."""
        if self.failure is not None:
            raise StreamCut(f"upstream body cut ({self.failure})")
        if self.timed_out:
            raise UpstreamTimeoutError(self._why_late("upstream read timed out mid-body"))
        await self._wait()

    def finish(self) -> bool:
        """End the exchange after a complete body; True when the connection may be reused."""
        self.active = False
        self.body = []
        self.buffered = 0
        if self.reusable and not self.closed and self.failure is None:
            if self.paused:
                self.take()
            return True
        self.close()
        return False

    def close(self) -> None:
        """Close the connection (a pending wait wakes up and sees the failure); idempotent."""
        if not self.closed:
            self.closed = True
            if self.active and not self.complete and self.failure is None:
                self.failure = "connection closed"
            if self._transport is not None:
                self._transport.abort()
            self._wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._dropped:
            self._dropped = True
            self._on_drop(self)

    def _wait(self) -> asyncio.Future[None]:
        """A future the next event resolves; the read timeout (within the limit) is armed for it."""
        loop = self._loop
        now = loop.time()
        if now >= self._limit:
            raise UpstreamTimeoutError(_PAST_DEADLINE)
        deadline = now + self._read_timeout
        if deadline > self._limit:
            deadline = self._limit
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
        waiter = self._waiter = loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _why_late(self, read_timeout: str) -> str:
        if self._loop.time() + _TIMER_SLACK_S >= self._limit:
            return _PAST_DEADLINE
        return read_timeout

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody is waiting: the next wait arms the timer again
        if self._loop.time() + _TIMER_SLACK_S >= self._deadline:
            self.timed_out = True
            self._wake()
        else:  # the deadline moved forward since this timer was set
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            self.reusable = False  # bytes nobody asked for: the stream is out of step
            self.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # a second response after the complete one lands here too (`_UnaskedResponse`)
            self._fail("malformed response")
            return
        if not self.headers_done:  # still in the head: progress, but within bounds
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self._fail("response head too large")
                return
            deadline = self._loop.time() + self._read_timeout
            self._deadline = deadline if deadline < self._limit else self._limit
        if self.buffered > _HIGH_WATER and not self.paused and self._transport is not None:
            self.paused = True
            self._transport.pause_reading()
        if self.headers_done:
            self._wake()

    def _fail(self, why: str) -> None:
        self.reusable = False
        if not self.complete:
            self.failure = why
        self.close()

    def eof_received(self) -> bool:
        self._ended("closed by the server")
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended("connection reset" if exc is not None else "closed by the server")
        self.close()

    def _ended(self, why: str) -> None:
        """The server is done sending: a read-until-close body ends here, anything else is cut."""
        self.reusable = False
        if not self.active or self.complete or self.failure is not None:
            return
        if self.headers_done and self._until_close:
            self.complete = True
        else:
            self.failure = why
        self._wake()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second response on one request: stop before its status is read
            self.reusable = False
            raise _UnaskedResponse

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # trailers are dropped: endless ones must not pile up here
            self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.headers_done:  # never reached (`on_message_begin` stops a second response)
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # 100 Continue, 103 Early Hints: skip
            self._informational = True
            self.raw_headers = []
            return
        self.status = status
        self.headers_done = True
        self._read_framing()
        if self.head_only:  # llhttp would wait for a HEAD body that never comes
            self.complete = True
            self.reusable = False

    def _read_framing(self) -> None:
        """Whether the body ends at the close; a head framed two ways is never reused."""
        coding = b""
        length = False
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                coding = value
            elif lower == b"content-length":
                length = True
        if coding:
            self._until_close = coding.rsplit(b",", 1)[-1].strip().lower() != b"chunked"
            if length:
                self.reusable = False
        else:
            self._until_close = not length and self.status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.complete:
            return
        self.complete = True
        if not self._parser.should_keep_alive():
            self.reusable = False
