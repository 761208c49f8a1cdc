"""Send an open upstream response to the client: whole JSON, or a stream event by event.

Neither settles: each tells the request's owner what it observed (the outcome, the tokens the
upstream reported, the model text streamed so far), and the owner's exit settles the call once.
A client that disconnects mid-stream cancels the upstream read; a stream longer than
`routing.max_stream_s` is cut. What reached the client (status, tokens, time to the first
streamed byte) is written into the request's `AccessRecord`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from gateway.api.asgi_io import Receive, Send, send_bytes
from gateway.api.stream_taps import StreamShaper
from gateway.api.stream_text import TextMeter
from gateway.errors import GatewayError, UpstreamError
from gateway.providers.transport import TransportError
from gateway.routing.outcome import Outcome
from gateway.routing.router import OpenCall, RequestOwner
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord
from gateway.telemetry.metrics import get_metrics

__all__ = ["relay_json", "relay_stream"]

Headers = list[tuple[bytes, bytes]]
JsonShaper = Callable[[bytes], tuple[bytes, tuple[int, int]]]
"""Upstream body -> (client body, (input tokens, output tokens)); raises GatewayError."""

_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class _Message(msgspec.Struct):
    model: str = ""


class _Answer(msgspec.Struct):
    """The model an answer names: top level (OpenAI, Anthropic) or in message_start."""

    model: str = ""
    message: _Message | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)


def _response_model(payload: bytes) -> str:
    """The model the provider says answered, from a JSON body or one SSE `data:` payload."""
    try:
        answer = _answer_decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return ""
    if answer.model:
        return answer.model
    return answer.message.model if answer.message is not None else ""


def _first_event_model(chunk: bytes) -> str:
    start = chunk.find(b"data:")
    if start < 0:
        return ""
    end = chunk.find(b"\n", start)
    return _response_model(chunk[start + 5 : end if end >= 0 else len(chunk)].strip())


def _note_model(call: OpenCall, model: str) -> None:
    if model:
        call.attempt.response_model(model)


async def relay_json(
    owner: RequestOwner,
    send: Send,
    headers: Headers,
    shape: JsonShaper,
    on_error: Callable[[GatewayError], bytes],
    record: AccessRecord,
) -> None:
    call = owner.opened_call
    try:
        payload = await call.response.read()
    except TransportError:
        # the client gets a 502 and no answer: nothing to charge it, nothing in the key's window
        owner.observe(Outcome.SERVER_ERROR, 0, 0)
        err = UpstreamError("the upstream response was cut", code="upstream_cut")
        record.status, record.error = err.status, err.code or ""
        await send_bytes(send, err.status, on_error(err), headers)
        return
    finally:
        await call.response.aclose()
    if tracing.enabled():
        _note_model(call, _response_model(payload))
    try:
        body, (tokens_in, tokens_out) = shape(payload)
    except GatewayError as err:
        owner.observe(Outcome.SERVER_ERROR, 0, 0)
        record.status, record.error = err.status, err.code or ""
        await send_bytes(send, err.status, on_error(err), headers)
        return
    owner.observe(Outcome.OK, tokens_in, tokens_out)
    record.status, record.tokens_in, record.tokens_out = 200, tokens_in, tokens_out
    await send_bytes(send, 200, body, headers)


class _StreamStop:
    """Stops a relayed stream once: cancels the task relaying it when the client leaves or the
    stream runs past `routing.max_stream_s`, and tells that cancellation from any other."""

    __slots__ = ("_task", "_withdrawn", "armed", "reason")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task = task
        self._withdrawn = False
        self.armed = True
        """False once the relay has left the pump: nothing may cancel the task after that."""
        self.reason = ""

    def client_gone(self, watcher: asyncio.Future[None]) -> None:
        if not watcher.cancelled():
            self._stop("client_gone")

    def too_long(self) -> None:
        self._stop("stream_too_long")

    def _stop(self, reason: str) -> None:
        if self.armed and not self.reason:
            self.reason = reason
            self._task.cancel()

    def withdraw(self) -> bool:
        """Take back this stop's cancel request (once); True when no other one is pending, so
        the CancelledError being handled was this stop's alone."""
        if not self.reason or self._withdrawn:
            return False
        self._withdrawn = True
        return self._task.uncancel() == 0


async def relay_stream(
    owner: RequestOwner,
    send: Send,
    receive: Receive,
    headers: Headers,
    shaper: StreamShaper,
    record: AccessRecord,
    started: float,
    max_stream_s: float,
) -> None:
    """`started`: when the request arrived (perf_counter), for the time to first token.

    The pump runs in the request's own task (no task of its own to start before the first
    chunk); a watcher task waiting for the client's disconnect and a timer at `max_stream_s`
    cancel it through `_StreamStop`.
    """
    call = owner.opened_call
    record.stream = True
    meter = TextMeter()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - an ASGI app always runs in a task
        raise RuntimeError("relay_stream must run in a task")
    stop = _StreamStop(task)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    watcher.add_done_callback(stop.client_gone)
    timer = asyncio.get_running_loop().call_later(max_stream_s, stop.too_long)
    outcome = Outcome.CANCELLED
    try:
        outcome = await _pump(call, send, shaper, meter, headers, record, started)
    except asyncio.CancelledError:
        if not stop.withdraw():  # the request itself was cancelled
            raise
        if stop.reason == "stream_too_long":
            record.error = stop.reason
    finally:
        stop.armed = False
        stop.withdraw()  # a stop the pump did not see (it ended first) leaves no request behind
        timer.cancel()
        watcher.cancel()
        await call.response.aclose()
        usage = shaper.usage
        if usage is None or usage[0] < 0:  # the charge falls back to the streamed text
            owner.observe_text(meter.text_bytes)
        if usage is None:
            owner.observe(outcome)
        else:
            owner.observe(outcome, usage[0], usage[1])
        record.tokens_in, record.tokens_out = owner.charged_usage
        if outcome != Outcome.OK and not record.error:
            record.error = "upstream_cut" if outcome == Outcome.SERVER_ERROR else "client_gone"


async def _pump(
    call: OpenCall,
    send: Send,
    shaper: StreamShaper,
    meter: TextMeter,
    headers: Headers,
    record: AccessRecord,
    started: float,
) -> str:
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *headers]})
    record.status = 200
    cut = False
    first = True
    try:
        async for chunk in call.response.iter_bytes():
            if first:
                first = False
                call.attempt.first_token()
                if tracing.enabled():
                    _note_model(call, _first_event_model(chunk))
            out = shaper.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                meter.feed(out)
                if record.ttft_ms < 0:
                    waited = time.perf_counter() - started
                    record.ttft_ms = round(waited * 1000, 3)
                    get_metrics().first_token(record.route, waited)
    except TransportError:
        cut = True
    except OSError:  # the client went away
        return Outcome.CANCELLED
    try:
        tail = shaper.finish()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        meter.feed(tail)
    except OSError:
        return Outcome.CANCELLED
    return Outcome.OK if shaper.completed and not cut else Outcome.SERVER_ERROR


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
