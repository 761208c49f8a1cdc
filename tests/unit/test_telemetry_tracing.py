"""Tracing helpers: spans continue the client's trace, the upstream gets that trace (never the
baggage), probes are not traced, and the off switch leaves only shared no-op objects.

The last tests export through the real OTLP exporters (HTTP and gRPC) to a receiver on a free
loopback port, configured only by OTEL_* variables, as an operator would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.providers.adapters import Endpoint
from gateway.telemetry import tracing
from tests import otlp_receiver
from tests.otlp_receiver import Receiver

__all__: list[str] = []

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = "/v1/chat/completions"


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer(provider.get_tracer("test"), provider)
    yield exporter
    tracing.shutdown_tracing()


def headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"traceparent", TRACEPARENT.encode()), *extra]


def hexid(value: int, width: int = 32) -> str:
    return format(value, f"0{width}x")


def parse_traceparent(value: str) -> tuple[str, str]:
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    return trace_id, span_id


def one_request_with_a_retry() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """What the router does for a request whose first upstream attempt gets a 429."""
    with tracing.server_span(
        headers((b"tracestate", b"vendor=abc"), (b"baggage", b"user=alice")), CHAT
    ) as request:
        request.set_request(request_id="r1", client_id="team-a", model="gpt-4o-mini")
        # baggage in the request's own context must not travel upstream either
        token = otel_context.attach(baggage.set_baggage("user", "alice"))
        with tracing.redis_span("admit+acquire", {"keyway.candidates": 2}) as decision:
            decision.set_attributes({"keyway.key_id": "oa-1"})
        first = tracing.upstream_span("openai", "oa-1", "gpt-4o-mini", 1)
        sent_first = first.inject_headers()
        first.response(429)
        first.end("rate_limited")
        with tracing.redis_span("acquire"):
            pass
        second = tracing.upstream_span("openai", "oa-2", "gpt-4o-mini", 2)
        sent_second = second.headers_for_upstream([("traceparent", TRACEPARENT), ("x-y", "z")])
        second.response(200)
        second.first_token()
        second.response_model("gpt-4o-mini-2024-07-18")
        second.usage(12, 34)
        second.end()
        second.end("server_error")  # a second end changes nothing
        otel_context.detach(token)
        request.set_status(200)
        trace_id = request.trace_id
    return sent_first, sent_second, trace_id


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


def test_spans_continue_the_clients_trace(spans: InMemorySpanExporter) -> None:
    _first, _second, trace_id = one_request_with_a_retry()
    finished = spans.get_finished_spans()
    assert trace_id == TRACE_ID
    assert len(finished) == 5
    assert {hexid(s.context.trace_id) for s in finished} == {TRACE_ID}
    named = by_name(finished)
    (server,) = named[f"POST {CHAT}"]
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None and server.parent.is_remote
    assert hexid(server.parent.span_id, 16) == PARENT_ID
    assert server.attributes is not None
    assert server.attributes["keyway.client_id"] == "team-a"
    assert server.attributes["http.response.status_code"] == 200
    others = [s for s in finished if s is not server]
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in others)
    (decision,) = named["EVALSHA admit+acquire"]
    assert decision.attributes is not None
    assert decision.attributes["keyway.candidates"] == 2
    assert decision.attributes["keyway.key_id"] == "oa-1"


def test_each_attempt_is_its_own_span_with_gen_ai_attributes(spans: InMemorySpanExporter) -> None:
    one_request_with_a_retry()
    first, second = by_name(spans.get_finished_spans())["chat gpt-4o-mini"]
    assert first.kind is SpanKind.CLIENT and second.kind is SpanKind.CLIENT
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["keyway.key_id"] == "oa-1"
    assert first.attributes["keyway.attempt"] == 1
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "rate_limited"
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes["gen_ai.system"] == "openai"
    assert second.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert second.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert second.attributes["gen_ai.usage.input_tokens"] == 12
    assert second.attributes["gen_ai.usage.output_tokens"] == 34
    assert second.attributes["keyway.outcome"] == "ok"
    assert [e.name for e in second.events] == ["first_token"]


def test_upstream_gets_the_attempts_traceparent_and_no_baggage(
    spans: InMemorySpanExporter,
) -> None:
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        sent_first, sent_second, _ = one_request_with_a_retry()
    finally:
        otel_context.detach(token)
    first, second = by_name(spans.get_finished_spans())["chat gpt-4o-mini"]
    names_first = [name for name, _ in sent_first]
    assert names_first == ["traceparent", "tracestate"]
    assert dict(sent_first)["tracestate"] == "vendor=abc"
    assert parse_traceparent(dict(sent_first)["traceparent"]) == (
        TRACE_ID,
        hexid(first.context.span_id, 16),
    )
    # the client's own traceparent is replaced by the attempt's, other headers kept
    assert [name for name, _ in sent_second].count("traceparent") == 1
    assert ("x-y", "z") in sent_second
    assert parse_traceparent(dict(sent_second)["traceparent"]) == (
        TRACE_ID,
        hexid(second.context.span_id, 16),
    )
    assert not [name for name, _ in sent_first + sent_second if name == "baggage"]


def test_a_request_without_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    outer = tracing.server_span(headers(), CHAT)
    with outer, tracing.server_span([], CHAT) as inner:
        fresh = inner.trace_id
    assert fresh not in ("", TRACE_ID)
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert len(roots) == 1


def test_probes_are_never_traced(spans: InMemorySpanExporter) -> None:
    for probe in sorted(tracing.UNTRACED_ROUTES):
        with tracing.server_span(headers(), probe, "GET") as span:
            assert span is tracing.NO_REQUEST_SPAN
    assert spans.get_finished_spans() == ()


def test_an_exception_marks_the_server_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tracing.server_span(headers(), CHAT):
        raise RuntimeError("boom")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_off_returns_shared_no_ops() -> None:
    tracing.use_tracer(None)
    assert not tracing.enabled()
    request = tracing.server_span(headers(), CHAT)
    assert request is tracing.NO_REQUEST_SPAN
    with request as same:
        same.set_request(request_id="r", client_id="c", model="m")
        same.set_status(500)
        assert same.trace_id == ""
        assert tracing.redis_span("acquire") is tracing.NO_SCRIPT_SPAN
        attempt = tracing.upstream_span("openai", "oa-1", "m", 1)
        assert attempt is tracing.NO_ATTEMPT_SPAN
        assert attempt.inject_headers() == []
        forwarded = [("traceparent", TRACEPARENT)]
        assert attempt.headers_for_upstream(forwarded) is forwarded
        attempt.end()
    assert tracing.current_trace_id() is None


def test_incoming_trace_id_for_logs() -> None:
    assert tracing.incoming_trace_id(headers()) == TRACE_ID
    assert tracing.incoming_trace_id([]) == ""
    assert tracing.incoming_trace_id([(b"traceparent", b"00-" + b"0" * 32 + b"-1-01")]) == ""
    assert tracing.incoming_trace_id([(b"traceparent", b"garbage")]) == ""


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "zipkin-does-not-exist"},
    ],
)
def test_tracing_stays_off_unless_configured(env: dict[str, str]) -> None:
    assert tracing.setup_tracing(env) is None
    assert not tracing.enabled()


def test_unknown_protocol_is_refused() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "x"}
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tracing.setup_tracing(env)
    tracing.use_tracer(None)


# -- the real exporters, configured by the environment ------------------------------------------


def triples(received: Receiver) -> list[tuple[str, str, str]]:
    """(service.name, trace id hex, span name) of every span received."""
    return [(s.service, s.trace_id, s.name) for s in received.spans()]


@pytest.fixture()
def http_receiver() -> Iterator[tuple[str, Receiver]]:
    with otlp_receiver.http_receiver() as receiver:
        yield receiver


@pytest.fixture()
def grpc_receiver() -> Iterator[tuple[str, Receiver]]:
    with otlp_receiver.grpc_receiver() as receiver:
        yield receiver


def export_one_request(env: dict[str, str]) -> None:
    assert tracing.setup_tracing(env) is not None
    with tracing.server_span(headers(), CHAT):
        tracing.upstream_span("openai", "oa-1", "gpt-4o-mini", 1).end()
    tracing.shutdown_tracing()  # flushes the batch processor
    assert not tracing.enabled()


def test_otlp_http_export(
    http_receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = http_receiver
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    export_one_request({"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SERVICE_NAME": "kw-http"})
    assert sorted(triples(received)) == [
        ("kw-http", TRACE_ID, f"POST {CHAT}"),
        ("kw-http", TRACE_ID, "chat gpt-4o-mini"),
    ]
    assert set(received.paths) == {"/v1/traces"}


def test_otlp_http_signal_endpoint_is_used_as_is(
    http_receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = http_receiver
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    export_one_request({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/custom/traces"})
    assert {name for name, _, _ in triples(received)} == {"keyway"}
    assert set(received.paths) == {"/custom/traces"}


def test_otlp_grpc_export(
    grpc_receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = grpc_receiver
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    export_one_request(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_SERVICE_NAME": "kw-grpc",
        }
    )
    assert sorted(triples(received)) == [
        ("kw-grpc", TRACE_ID, f"POST {CHAT}"),
        ("kw-grpc", TRACE_ID, "chat gpt-4o-mini"),
    ]


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [
        (Endpoint.CHAT, "chat"),
        (Endpoint.MESSAGES, "chat"),
        (Endpoint.RESPONSES, "chat"),
        (Endpoint.COMPLETIONS, "text_completion"),
        (Endpoint.EMBEDDINGS, "embeddings"),
    ],
)
def test_gen_ai_operation_names_every_generating_endpoint(
    endpoint: Endpoint, operation: str
) -> None:
    assert tracing.gen_ai_operation(endpoint.value) == operation
