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
from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from gateway import __version__
from gateway.telemetry.spans import (
    NO_ATTEMPT_SPAN,
    NO_REQUEST_SPAN,
    NO_SCRIPT_SPAN,
    TRACE_CONTEXT,
    AttemptSpan,
    LiveAttemptSpan,
    LiveRequestSpan,
    LiveScriptSpan,
    RequestSpan,
    ScriptSpan,
)

__all__ = [
    "NO_ATTEMPT_SPAN",
    "NO_REQUEST_SPAN",
    "NO_SCRIPT_SPAN",
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

_GEN_AI_SYSTEMS: Final = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure-openai": "az.ai.openai",
    "anthropic": "anthropic",
}
_GEN_AI_OPERATIONS: Final = {
    "chat/completions": "chat",
    "messages": "chat",
    "responses": "chat",
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
    parent = TRACE_CONTEXT.extract(carrier, context=otel_context.Context())
    span = tracer.start_span(
        f"{method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route, "url.path": route},
    )
    return LiveRequestSpan(span)


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
    return LiveScriptSpan(
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
    return LiveAttemptSpan(span)


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
    endpoint is set; `OTEL_TRACES_EXPORTER=none` turns it off, `OTEL_SDK_DISABLED=true` always.
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
