"""A scripted upstream at the transport seam: what `httpx.MockTransport` is for httpx.

`ScriptedTransport(handler)` implements `UpstreamTransport`; every `send` is recorded as a
`SentRequest` and answered by `handler(request)`, which returns a `Reply`: a status, headers and a
body (or a list of stream chunks), plus at most one fault at a chosen place of the exchange:

    connect_error   raised by `send` (a TransportError, an UpstreamTimeoutError, any Exception)
    hang_at_connect `send` never returns (until the caller is cancelled)
    read_error      raised by `read` (a JSON body cut before it arrived)
    chunk_error     raised by `iter_bytes` after `error_after` chunks (0: at the first chunk)
    hang_after      `iter_bytes` stops after that many chunks and waits until cancelled

An exchange that starts to hang has had every chunk before it taken by the gateway, so a test may
disconnect or cancel at a known point of the stream: `hanging` is set then, and
`wait_hanging(which)` returns once the exchange of a request `which` picks hangs (with several
requests in flight, each waits for its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import msgspec

from gateway.providers.transport import StreamCut, fold_headers

__all__ = ["Handler", "Reply", "ScriptedResponse", "ScriptedTransport", "SentRequest"]

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One request as it left the gateway for the provider."""

    method: str
    url: str
    headers: Mapping[str, str]
    """Lower-cased names, repeats joined (as a transport folds them)."""
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        return _decoder.decode(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class Reply:
    """What the scripted provider answers, and where the exchange fails (if it does)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes | None = None
    chunks: Sequence[bytes] | None = None
    """Stream chunks, yielded one by one by `iter_bytes` (`read` joins them)."""
    connect_error: BaseException | None = None
    hang_at_connect: bool = False
    read_error: BaseException | None = None
    chunk_error: BaseException | None = None
    error_after: int = 0
    """Chunks yielded before `chunk_error` is raised."""
    hang_after: int | None = None

    def with_headers(self, extra: Mapping[str, str]) -> Reply:
        """The same reply with more headers."""
        return replace(self, headers={**self.headers, **extra})

    def failing_read(self, error: BaseException | None = None) -> Reply:
        """The same reply, its body cut (StreamCut unless `error`) before it arrived."""
        return replace(self, read_error=error or StreamCut("cut by the script"))

    def cut(self, after: int, error: BaseException | None = None) -> Reply:
        """The same stream, cut (StreamCut unless `error`) after `after` chunks."""
        return replace(self, chunk_error=error or StreamCut("cut by the script"), error_after=after)

    def hang(self, after: int) -> Reply:
        """The same stream, hanging after `after` chunks."""
        return replace(self, hang_after=after)


Handler = Callable[[SentRequest], Reply]


class ScriptedResponse:
    """An `UpstreamResponse` playing one `Reply`."""

    def __init__(self, reply: Reply, hang: Callable[[], Awaitable[None]]) -> None:
        self.reply = reply
        self.status = reply.status
        self.headers: Mapping[str, str] = fold_headers(reply.headers.items())
        self.closed = False
        self.consumed = False
        self._hang = hang

    async def read(self, *, deadline: float | None = None) -> bytes:
        try:
            if self.reply.read_error is not None:
                raise self.reply.read_error
            if self.reply.body is not None:
                return self.reply.body
            return b"".join(self.reply.chunks or ())
        finally:
            self.consumed = True

    async def iter_bytes(self, *, deadline: float | None = None) -> AsyncIterator[bytes]:
        chunks = (
            list(self.reply.chunks) if self.reply.chunks is not None else [self.reply.body or b""]
        )
        for index in range(len(chunks) + 1):
            if self.reply.chunk_error is not None and index == self.reply.error_after:
                self.consumed = True
                raise self.reply.chunk_error
            if self.reply.hang_after is not None and index == self.reply.hang_after:
                await self._hang()
            if index == len(chunks):
                break
            yield chunks[index]
        self.consumed = True

    async def aclose(self) -> None:
        self.closed = True


class ScriptedTransport:
    """An `UpstreamTransport` whose provider is a function; it remembers every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[SentRequest] = []
        self.deadlines: list[float | None] = []
        """The `deadline` each `send` was given, in request order."""
        self.responses: list[ScriptedResponse] = []
        self.hanging = asyncio.Event()
        self.hung: list[SentRequest] = []
        """The requests whose exchange hangs, in the order they started to."""
        self._hung_more = asyncio.Event()
        self.closed = False

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
    ) -> ScriptedResponse:
        request = SentRequest(method, url, fold_headers(headers), body or b"")
        self.requests.append(request)
        self.deadlines.append(deadline)
        reply = self.handler(request)
        if reply.connect_error is not None:
            raise reply.connect_error
        if reply.hang_at_connect:
            await self._hang(request)
        response = ScriptedResponse(reply, lambda: self._hang(request))
        self.responses.append(response)
        return response

    async def _hang(self, request: SentRequest) -> None:
        self.hung.append(request)
        self.hanging.set()
        self._hung_more.set()
        self._hung_more = asyncio.Event()
        await asyncio.Event().wait()  # only a cancellation ends it

    async def wait_hanging(self, which: Callable[[SentRequest], bool]) -> SentRequest:
        """Wait until the exchange of a request `which` picks hangs; that request."""
        while True:
            hung = next((r for r in self.hung if which(r)), None)
            if hung is not None:
                return hung
            await self._hung_more.wait()

    def unreleased(self) -> list[ScriptedResponse]:
        """Responses the gateway neither read to the end nor closed (a leaked connection)."""
        return [r for r in self.responses if not (r.closed or r.consumed)]

    async def aclose(self) -> None:
        self.closed = True
