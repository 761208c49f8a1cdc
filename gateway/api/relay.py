"""Send an open upstream response to the client: whole JSON, or a stream event by event.

Both end by settling the call exactly once: the key's outcome, the real tokens (or -1 when the
upstream never said, so the estimate stays charged). A client that disconnects mid-stream
cancels the upstream read; what was used is settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.api.asgi_io import Receive, Send, send_bytes
from gateway.api.stream_taps import StreamShaper
from gateway.errors import GatewayError, UpstreamError
from gateway.providers.transport import TransportError
from gateway.routing.outcome import Outcome
from gateway.routing.router import OpenCall, Router

__all__ = ["relay_json", "relay_stream"]

Headers = list[tuple[bytes, bytes]]
JsonShaper = Callable[[bytes], tuple[bytes, tuple[int, int]]]
"""Upstream body -> (client body, (input tokens, output tokens)); raises GatewayError."""

_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def relay_json(
    router: Router,
    call: OpenCall,
    send: Send,
    headers: Headers,
    shape: JsonShaper,
    on_error: Callable[[GatewayError], bytes],
) -> None:
    try:
        payload = await call.response.read()
    except TransportError:
        router.finish(call, Outcome.SERVER_ERROR, tokens_in=-1, tokens_out=-1)
        err = UpstreamError("the upstream response was cut", code="upstream_cut")
        await send_bytes(send, err.status, on_error(err), headers)
        return
    finally:
        await call.response.aclose()
    try:
        body, (tokens_in, tokens_out) = shape(payload)
    except GatewayError as err:
        router.finish(call, Outcome.SERVER_ERROR, tokens_in=-1, tokens_out=-1)
        await send_bytes(send, err.status, on_error(err), headers)
        return
    router.finish(call, Outcome.OK, tokens_in=tokens_in, tokens_out=tokens_out)
    await send_bytes(send, 200, body, headers)


async def relay_stream(
    router: Router,
    call: OpenCall,
    send: Send,
    receive: Receive,
    headers: Headers,
    shaper: StreamShaper,
) -> None:
    pump = asyncio.ensure_future(_pump(call, send, shaper, headers))
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    outcome = Outcome.CANCELLED
    try:
        done, _ = await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            outcome = pump.result()
        else:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
    finally:
        watcher.cancel()
        pump.cancel()
        await call.response.aclose()
        usage = shaper.usage or (-1, -1)
        router.finish(call, outcome, tokens_in=usage[0], tokens_out=usage[1])


async def _pump(call: OpenCall, send: Send, shaper: StreamShaper, headers: Headers) -> str:
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *headers]})
    cut = False
    try:
        async for chunk in call.response.iter_bytes():
            out = shaper.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
    except TransportError:
        cut = True
    except OSError:  # the client went away
        return Outcome.CANCELLED
    try:
        await send({"type": "http.response.body", "body": shaper.finish(), "more_body": False})
    except OSError:
        return Outcome.CANCELLED
    return Outcome.OK if shaper.completed and not cut else Outcome.SERVER_ERROR


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
