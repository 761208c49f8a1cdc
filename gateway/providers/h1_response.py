"""The response of the `h1` transport: status and headers at once, the body from its connection.

The body is read either whole (`read`) or as it arrives (`iter_bytes`, one piece per wake-up,
never re-chunked). Whatever ends the reading decides the connection's fate: read to the end,
it goes back to the pool (`reuse`) when the server allowed keep-alive; abandoned, cut, timed
out or cancelled, it is closed, so a half-read connection never serves another request. A
response dropped without `aclose` closes its connection too: a caller's bug must not leak a
pool slot while the provider keeps streaming into a paused socket.

`read` is bounded by the deadline given to `send` (the exchange's, set on the connection)
unless given its own; `iter_bytes` only by a deadline given to it, since a stream's length is
its caller's to bound (``routing.max_stream_s``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from gateway.providers.h1_connection import H1Connection
from gateway.providers.transport import UpstreamTimeoutError

__all__ = ["H1Response"]


def _folded(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """`transport.fold_headers` of the raw fields, decoded as latin-1, in one loop (per request)."""
    folded: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        previous = folded.get(name)
        folded[name] = value if previous is None else f"{previous}, {value}"
    return folded


class H1Response:
    """A response whose headers have arrived; the body is read from its connection."""

    __slots__ = ("_conn", "_reuse", "headers", "status")

    def __init__(self, conn: H1Connection, reuse: Callable[[H1Connection], None]) -> None:
        self._reuse = reuse
        """Takes the connection back when the body was read to the end and it may be reused."""
        self._conn: H1Connection | None = conn
        self.status = conn.status
        self.headers: Mapping[str, str] = _folded(conn.raw_headers)

    async def read(self, *, deadline: float | None = None) -> bytes:
        """The whole body (read once; a second call returns b"")."""
        conn = self._conn
        if conn is None:
            return b""
        if deadline is not None:
            conn.limit_to(deadline)
        parts: list[bytes] = []
        try:
            while not conn.complete:
                if conn.body:
                    parts.append(conn.take())
                else:
                    await conn.wait_body()
        except BaseException:
            self._abandon()
            raise
        if conn.body:
            parts.append(conn.take())
        self._finish()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        """Everything that has arrived since the last chunk, as soon as it arrives."""
        conn = self._conn
        if conn is None:
            return
        conn.limit_to(deadline)
        try:
            while True:
                if conn.body:
                    chunk = conn.take()
                    if conn.complete:
                        self._finish()  # back in the pool before the last chunk is handled
                        yield chunk
                        return
                    if conn.past_limit():  # a consumer slower than the stream never waits
                        raise UpstreamTimeoutError("upstream exchange passed its deadline")
                    yield chunk
                elif conn.complete:
                    break
                else:
                    await conn.wait_body()
        except BaseException:
            self._abandon()
            raise
        self._finish()

    async def aclose(self) -> None:
        self._abandon()

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:  # dropped unread: close rather than leak
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                conn.close()

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.finish():
            self._reuse(conn)

    def _abandon(self) -> None:
        """Stop reading: a fully received response still frees its connection, else it closes."""
        conn = self._conn
        if conn is not None and conn.complete and conn.failure is None:
            self._finish()
        elif conn is not None:
            self._conn = None
            conn.close()
