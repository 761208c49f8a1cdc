"""The spans of one request: the request, a Redis round trip, an upstream attempt.

Each public class is its own no-op: tracing off, the helpers in `gateway.telemetry.tracing`
hand out one shared instance of it and every method returns at once. The `Live*` subclasses
wrap an SDK span. Trace context leaves the process only as W3C `traceparent`/`tracestate`,
through `TRACE_CONTEXT`: never the globally configured propagators, which include baggage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

__all__ = [
    "NO_ATTEMPT_SPAN",
    "NO_REQUEST_SPAN",
    "NO_SCRIPT_SPAN",
    "TRACE_CONTEXT",
    "AttemptSpan",
    "LiveAttemptSpan",
    "LiveRequestSpan",
    "LiveScriptSpan",
    "RequestSpan",
    "ScriptSpan",
]

TRACE_CONTEXT: Final = TraceContextTextMapPropagator()
_TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate"})


class RequestSpan:
    """The server span of one request; this base class is the no-op used when tracing is off."""

    __slots__ = ()

    @property
    def trace_id(self) -> str:
        """The trace id in hex, or '' when not traced."""
        return ""

    def __enter__(self) -> RequestSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def set_request(self, *, request_id: str, client_id: str = "", model: str = "") -> None:
        """Who asked for which model alias (ids only)."""

    def set_status(self, status: int) -> None:
        """The HTTP status sent to the client; 5xx marks the span as an error."""

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Any other attributes (keyway.* names)."""


class ScriptSpan:
    """A span around one Redis round trip; the base class is the no-op."""

    __slots__ = ()

    def __enter__(self) -> ScriptSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """The decision, once the reply is in: chosen key id, skipped keys and why."""


class AttemptSpan:
    """One upstream attempt, open until `end()` (after the last streamed byte); base = no-op."""

    __slots__ = ()

    def inject_headers(self) -> list[tuple[str, str]]:
        """`traceparent` (and `tracestate`) naming this attempt, to send upstream."""
        return []

    def headers_for_upstream(self, client_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """`client_headers` with the client's trace headers replaced by this attempt's."""
        return client_headers

    def response(self, status: int) -> None:
        """The upstream's HTTP status; not 2xx marks the attempt as an error."""

    def response_model(self, model: str) -> None:
        """`gen_ai.response.model`: the model the provider says answered."""

    def usage(self, input_tokens: int, output_tokens: int) -> None:
        """`gen_ai.usage.*` (negative = unknown, not recorded)."""

    def first_token(self) -> None:
        """The first byte of the answer arrived: an event, and the wait as an attribute."""

    def end(self, outcome: str = "ok", error: BaseException | None = None) -> None:
        """Close the span (later calls do nothing); an outcome other than `ok` is an error."""


NO_REQUEST_SPAN: Final = RequestSpan()
NO_SCRIPT_SPAN: Final = ScriptSpan()
NO_ATTEMPT_SPAN: Final = AttemptSpan()


class LiveRequestSpan(RequestSpan):
    __slots__ = ("_context", "_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._context = trace.set_span_in_context(span, otel_context.Context())
        self._token: Any = None

    @property
    def trace_id(self) -> str:
        return trace.format_trace_id(self._span.get_span_context().trace_id)

    def __enter__(self) -> RequestSpan:
        self._token = otel_context.attach(self._context)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None:
                self._span.record_exception(exc)
                self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            self._span.end()
        finally:
            if self._token is not None:
                otel_context.detach(self._token)

    def set_request(self, *, request_id: str, client_id: str = "", model: str = "") -> None:
        self._span.set_attributes(
            {"keyway.request_id": request_id, "keyway.client_id": client_id, "keyway.model": model}
        )

    def set_status(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self._span.set_status(Status(StatusCode.ERROR))

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._span.set_attributes(attributes)


class LiveScriptSpan(ScriptSpan):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.end()

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._span.set_attributes(attributes)


class LiveAttemptSpan(AttemptSpan):
    __slots__ = ("_ended", "_span", "_started")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._started = time.perf_counter()
        self._ended = False

    def inject_headers(self) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        TRACE_CONTEXT.inject(carrier, context=trace.set_span_in_context(self._span))
        return list(carrier.items())

    def headers_for_upstream(self, client_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        kept = [(k, v) for k, v in client_headers if k not in _TRACE_HEADERS]
        return kept + self.inject_headers()

    def response(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if not 200 <= status < 300:
            self._span.set_attribute("error.type", str(status))
            self._span.set_status(Status(StatusCode.ERROR))

    def response_model(self, model: str) -> None:
        self._span.set_attribute("gen_ai.response.model", model)

    def usage(self, input_tokens: int, output_tokens: int) -> None:
        if input_tokens >= 0:
            self._span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens >= 0:
            self._span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

    def first_token(self) -> None:
        waited = time.perf_counter() - self._started
        self._span.add_event("first_token", {"keyway.time_to_first_token_s": waited})
        self._span.set_attribute("keyway.time_to_first_token_s", waited)

    def end(self, outcome: str = "ok", error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._span.set_attribute("keyway.outcome", outcome)
        if error is not None:
            self._span.record_exception(error)
        if outcome != "ok":
            self._span.set_attribute("error.type", outcome)
            self._span.set_status(Status(StatusCode.ERROR, outcome))
        self._span.end()
