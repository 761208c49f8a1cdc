"""OpenTelemetry spans along the request path, exported by OTLP; off unless OTEL_* asks for it.

Spans of one request::

    POST /v1/chat/completions   SERVER  continues the client's W3C traceparent
     ├── EVALSHA admit+acquire  CLIENT  one per Redis round trip, with the routing decision
     ├── chat gpt-4o-mini       CLIENT  upstream attempt 1 (a 429: status error)
     ├── EVALSHA acquire        CLIENT
     └── chat gpt-4o-mini       CLIENT  attempt 2, open until the stream ends; its traceparent
                                        is the one the provider receives

Off (the default), `_tracer` is None and every helper returns a shared no-op object after that
one check: the hot path pays a function call, nothing else. Only the W3C trace context crosses
process boundaries, in both directions: baggage is neither read from clients nor sent upstream.
Probe paths are never traced.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway import __version__

__all__ = [
    "UNTRACED_ROUTES",
    "AttemptSpan",
    "RequestSpan",
    "ScriptSpan",
    "current_trace_id",
    "enabled",
    "gen_ai_operation",
    "gen_ai_system",
    "incoming_trace_id",
    "redis_span",
    "server_span",
    "setup_tracing",
    "shutdown_tracing",
    "upstream_span",
    "use_tracer",
]

log = logging.getLogger("keyway.tracing")

UNTRACED_ROUTES: Final = frozenset({"/livez", "/readyz", "/metrics"})

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate"})
_GEN_AI_SYSTEMS: Final = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure-openai": "az.ai.openai",
    "anthropic": "anthropic",
}
_GEN_AI_OPERATIONS: Final = {
    "chat/completions": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}

_tracer: Tracer | None = None
_provider: Any = None
"""The SDK TracerProvider that `setup_tracing` built (flushed by `shutdown_tracing`)."""


def gen_ai_system(provider_kind: str) -> str:
    """The `gen_ai.system` value for a provider kind of the config."""
    return _GEN_AI_SYSTEMS.get(provider_kind, provider_kind)


def gen_ai_operation(endpoint_path: str) -> str:
    """The `gen_ai.operation.name` for an `Endpoint` value (`chat/completions` -> `chat`)."""
    return _GEN_AI_OPERATIONS.get(endpoint_path, endpoint_path)


# -- the three kinds of span; each base class is its own no-op -------------------------------


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


class _LiveRequestSpan(RequestSpan):
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


class _LiveScriptSpan(ScriptSpan):
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


class _LiveAttemptSpan(AttemptSpan):
    __slots__ = ("_ended", "_span", "_started")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._started = time.perf_counter()
        self._ended = False

    def inject_headers(self) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self._span))
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


# -- what the hot path calls -----------------------------------------------------------------


def enabled() -> bool:
    return _tracer is not None


def server_span(
    headers: Iterable[tuple[bytes, bytes]], route: str, method: str = "POST"
) -> RequestSpan:
    """The server span of a request (use as `with`), continuing its `traceparent` if any.

    `headers` are the ASGI scope's (lower-case names). Only `traceparent`/`tracestate` are
    read: an incoming `baggage` header is ignored, so it can never reach a provider.
    """
    tracer = _tracer
    if tracer is None or route in UNTRACED_ROUTES:
        return NO_REQUEST_SPAN
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name == b"traceparent" or name == b"tracestate":
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    # an empty Context, not the ambient one: a request is never a child of whatever ran before
    parent = _PROPAGATOR.extract(carrier, context=otel_context.Context())
    span = tracer.start_span(
        f"{method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route, "url.path": route},
    )
    return _LiveRequestSpan(span)


def redis_span(script: str, attributes: Mapping[str, AttributeValue] | None = None) -> ScriptSpan:
    """A span (use as `with`) around one Redis round trip running `script`."""
    tracer = _tracer
    if tracer is None:
        return NO_SCRIPT_SPAN
    attrs: dict[str, AttributeValue] = {
        "db.system.name": "redis",
        "db.operation.name": "EVALSHA",
        "keyway.script": script,
    }
    if attributes:
        attrs.update(attributes)
    return _LiveScriptSpan(
        tracer.start_span(f"EVALSHA {script}", kind=SpanKind.CLIENT, attributes=attrs)
    )


def upstream_span(
    provider: str,
    key_id: str,
    model: str,
    attempt: int,
    *,
    system: str = "openai",
    operation: str = "chat",
) -> AttemptSpan:
    """Start the span of one upstream attempt; the caller must `end()` it exactly once.

    `system`: `gen_ai_system(kind)`; `operation`: `gen_ai_operation(endpoint.value)`.
    """
    tracer = _tracer
    if tracer is None:
        return NO_ATTEMPT_SPAN
    span = tracer.start_span(
        f"{operation} {model}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            "keyway.provider": provider,
            "keyway.key_id": key_id,
            "keyway.attempt": attempt,
        },
    )
    return _LiveAttemptSpan(span)


def current_trace_id() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current in this context, if tracing is on."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def incoming_trace_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The trace id of a request's W3C `traceparent`, or '' (for logs when tracing is off)."""
    for name, value in headers:
        if name == b"traceparent":
            parts = value.split(b"-")
            if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != b"0" * 32:
                try:
                    int(parts[1], 16)
                except ValueError:
                    return ""
                return parts[1].decode("ascii").lower()
            return ""
    return ""


# -- set-up, once per worker -----------------------------------------------------------------


def use_tracer(tracer: Tracer | None, provider: Any = None) -> Tracer | None:
    """Make `tracer` the one the helpers use (None: off). Tests pass an SDK tracer here."""
    global _tracer, _provider
    _tracer = tracer
    _provider = provider
    return tracer


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint or base or None)
    if protocol not in ("http/protobuf", "http"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf or grpc")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    if endpoint is None and base:
        # the signal path is appended to the generic endpoint only (OTLP exporter spec)
        endpoint = base.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint or None)


def setup_tracing(env: Mapping[str, str] | None = None) -> Tracer | None:
    """Build the tracer from the standard OTEL_* variables; None (tracing off) unless asked.

    On when `OTEL_TRACES_EXPORTER` names `otlp` or `console`, or when it is unset and an OTLP
    endpoint is set. `OTEL_SDK_DISABLED=true` always wins; `OTEL_TRACES_EXPORTER=none` turns it off.
    Call once per worker process (after Granian forks it): spans leave through a
    BatchSpanProcessor whose thread belongs to that process.
    """
    env = os.environ if env is None else env
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return use_tracer(None)
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        if not (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        ):
            return use_tracer(None)
        names = ["otlp"]
    for unknown in [n for n in names if n not in ("otlp", "console", "none")]:
        log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", unknown)
    names = [n for n in names if n in ("otlp", "console")]
    if not names:
        return use_tracer(None)

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME") or "keyway",
            "service.version": __version__,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
    )
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    tracer = provider.get_tracer("keyway", __version__)
    log.info("tracing on: exporters %s", ",".join(names))
    return use_tracer(tracer, provider)


def shutdown_tracing() -> None:
    """Flush and stop the exporters (worker shutdown); tracing is off afterwards."""
    provider = _provider
    use_tracer(None)
    if provider is not None:
        provider.shutdown()
