"""Observability of real processes: one trace across the load balancer, metrics summed over
Granian workers, and one JSON access line per request without a secret in the whole log.

Tracing goes to OTLP receivers the test starts (tests/otlp_receiver.py), configured only by the
standard OTEL_* variables, as an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import (
    FakeControl,
    Proc,
    make_config,
    start_gateway,
    start_haproxy,
    start_redis,
)
from tests.otlp_receiver import (
    CLIENT,
    SERVER,
    STATUS_ERROR,
    ReceivedSpan,
    Receiver,
    grpc_receiver,
    http_receiver,
)

CHAT_ROUTE = "/v1/chat/completions"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
# exporters of the replicas talk to the receivers on loopback, never through a proxy
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def chat(
    url: str,
    key: str = "sk-client-a",
    *,
    model: str = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "where did the time go?"}],
        "max_tokens": 8,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return httpx.post(
        url + CHAT_ROUTE,
        json=body,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )


def poll(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait until `check()` holds (exports, scrapes and log lines land shortly after a reply)."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        proc.stop()


# -- 1. one trace through haproxy and two replicas -----------------------------------------------


@pytest.fixture()
def receivers() -> Iterator[tuple[tuple[str, Receiver], tuple[str, Receiver]]]:
    with ExitStack() as stack:
        yield stack.enter_context(http_receiver()), stack.enter_context(grpc_receiver())


def test_one_trace_through_the_load_balancer_with_a_retry(
    procs: ExitStack,
    logs: Path,
    redis_url: str,
    fake: FakeControl,
    prefix: dict[str, str],
    receivers: tuple[tuple[str, Receiver], tuple[str, Receiver]],
) -> None:
    (http_url, via_http), (grpc_url, via_grpc) = receivers
    config = make_config(fake.url)
    common = {**prefix, **NO_PROXY, "OTEL_BSP_SCHEDULE_DELAY": "100", "KEYWAY_LOG_FORMAT": "json"}
    # one replica exports over OTLP/HTTP, the other over OTLP/gRPC
    a = procs.enter_context(start_gateway(
        logs, config, redis_url=redis_url,
        env={**common, "OTEL_EXPORTER_OTLP_ENDPOINT": http_url, "OTEL_SERVICE_NAME": "kw-a"},
    ))  # fmt: skip
    b = procs.enter_context(start_gateway(
        logs, config, redis_url=redis_url,
        env={**common, "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_url, "OTEL_SERVICE_NAME": "kw-b",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ))  # fmt: skip
    lb = procs.enter_context(start_haproxy(logs, [a.port, b.port]))
    try:
        fake.fault("*", "500", count=1)  # whichever key is chosen first fails once
        r = chat(lb.url, headers={"traceparent": TRACEPARENT, "baggage": "user=alice"})
        assert r.status_code == 200, r.text
        assert r.headers["x-keyway-attempts"] == "2"
        answer = r.json()
        upstream_headers = fake.last_request()["headers"]

        def everything(spans: list[ReceivedSpan]) -> bool:
            names = [s.name for s in spans]
            return f"POST {CHAT_ROUTE}" in names and names.count("chat gpt-4o-mini") >= 2

        spans: list[ReceivedSpan] = []

        def arrived() -> bool:
            spans[:] = via_http.spans() + via_grpc.spans()
            return everything(spans)

        poll(arrived)
    finally:
        stop_all([lb, a, b])
    served_by = a if via_http.spans() else b
    request_id = r.headers["x-request-id"]

    # one trace, the client's, from the one replica that served the request: the readiness
    # probes haproxy sent to both replicas all along were not traced
    assert {s.trace_id for s in spans} == {TRACE_ID}
    assert len({s.service for s in spans}) == 1
    (server,) = [s for s in spans if s.kind == SERVER]
    assert server.name == f"POST {CHAT_ROUTE}"
    assert server.parent_span_id == PARENT_ID
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["keyway.request_id"] == request_id
    assert server.attributes["keyway.client_id"] == "team-a"
    assert server.attributes["keyway.model"] == "gpt-4o-mini"
    assert str(server.resource["service.instance.id"]).endswith(
        f"-{server.resource['process.pid']}"
    )
    children = [s for s in spans if s is not server]
    assert {s.parent_span_id for s in children} == {server.span_id}

    first, second = sorted(
        (s for s in spans if s.name == "chat gpt-4o-mini"),
        key=lambda s: s.attributes["keyway.attempt"],
    )
    assert len(spans) == 5
    assert first.kind == CLIENT and second.kind == CLIENT
    assert (first.attributes["keyway.attempt"], second.attributes["keyway.attempt"]) == (1, 2)
    assert first.status_code == STATUS_ERROR
    assert first.attributes["keyway.outcome"] == "server_error"
    assert first.attributes["http.response.status_code"] == 500
    assert second.status_code != STATUS_ERROR
    assert second.attributes["keyway.outcome"] == "ok"
    assert second.attributes["keyway.key_id"] == r.headers["x-keyway-key"]
    assert first.attributes["keyway.key_id"] != second.attributes["keyway.key_id"]
    assert second.attributes["gen_ai.system"] == "openai"
    assert second.attributes["gen_ai.operation.name"] == "chat"
    assert second.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert second.attributes["gen_ai.response.model"] == answer["model"]
    assert second.attributes["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"]
    assert second.attributes["gen_ai.usage.output_tokens"] == answer["usage"]["completion_tokens"]

    # the routing decisions: admit the client and pick a key, then (after the 500) another key
    decisions = {s.name: s for s in spans if s.name.startswith("EVALSHA")}
    assert sorted(decisions) == ["EVALSHA acquire", "EVALSHA admit+acquire"]
    admit = decisions["EVALSHA admit+acquire"].attributes
    again = decisions["EVALSHA acquire"].attributes
    assert (admit["keyway.candidates"], admit["keyway.key_id"]) == (
        3,
        first.attributes["keyway.key_id"],
    )
    assert (again["keyway.candidates"], again["keyway.key_id"]) == (
        2,
        second.attributes["keyway.key_id"],
    )
    assert admit["db.system.name"] == "redis"

    # the provider got the second attempt's traceparent, in the client's trace, and no baggage
    assert upstream_headers["traceparent"] == f"00-{TRACE_ID}-{second.span_id}-01"
    assert "baggage" not in upstream_headers

    # the replica's access line names the same trace
    lines = [msgspec.json.decode(line) for line in served_by.log_path.read_bytes().splitlines()
             if b'"msg":"request"' in line]  # fmt: skip
    assert [(x["request_id"], x["trace_id"], x["attempts"]) for x in lines] == [
        (request_id, TRACE_ID, 2)
    ]


# -- 2. Prometheus metrics, summed across two Granian workers ------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _labels(samples: Samples) -> set[tuple[str, str]]:
    return {label for _, labels in samples for label in labels}


def test_metrics_move_by_the_right_amounts_across_workers(
    logs: Path, redis_url: str, fake: FakeControl, prefix: dict[str, str]
) -> None:
    config = make_config(
        fake.url, extra_clients='  - {id: team-c, key: sk-client-c, rpm: 1, models: ["*"]}\n'
    )
    gw = start_gateway(
        logs, config, redis_url=redis_url, workers=2, env={**prefix, "KEYWAY_LOG_FORMAT": "json"}
    )
    try:
        before = scrape(gw.url)
        # the first attempt of the first request is refused; that key cools down for 30 s
        fake.fault("*", "429", count=1, retry_after_s=30)
        answers = [chat(gw.url), chat(gw.url), chat(gw.url, "sk-client-c")]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["x-keyway-attempts"] for a in answers] == ["2", "1", "1"]
        limited = chat(gw.url, "sk-client-c")  # team-c's one request per minute is spent
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "client_rpm"
        assert chat(gw.url, model="no-such-model").status_code == 404

        after: Samples = {}

        def settled() -> bool:
            after.update(scrape(gw.url))
            cooling = total(after, "keyway_key_state", state="cooling")
            answered = total(after, "keyway_requests_total") - total(
                before, "keyway_requests_total"
            )
            return answered == 5 and cooling == 1

        poll(settled)
        # whichever worker answers a scrape shows the sum of both
        again = [scrape(gw.url) for _ in range(6)]
        # a made-up method gets its 405 without a series of its own
        assert httpx.request("BREW", gw.url + CHAT_ROUTE, timeout=10).status_code == 405
        brewed: Samples = {}

        def brew_counted() -> bool:
            brewed.update(scrape(gw.url))
            return total(brewed, "keyway_requests_total", status="405") == 1

        poll(brew_counted)
    finally:
        gw.stop()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("keyway_requests_total", route=CHAT_ROUTE, status="200") == 3
    assert delta("keyway_requests_total", route=CHAT_ROUTE, status="404") == 1
    assert delta("keyway_requests_total", route=CHAT_ROUTE, status="429") == 1
    assert delta("keyway_requests_total") == 5
    assert delta("proxy_requests_total", endpoint=CHAT_ROUTE, status="200") == 3
    assert delta("keyway_request_duration_seconds_count", route=CHAT_ROUTE) == 5
    assert delta("keyway_upstream_attempts_total", provider="fake", outcome="ok") == 3
    assert delta("keyway_upstream_attempts_total", provider="fake", outcome="rate_limited") == 1
    assert delta("keyway_upstream_attempts_total") == 4
    assert delta("keyway_fallbacks_total", reason="rate_limited") == 1
    assert delta("keyway_fallbacks_total") == 1
    assert delta("keyway_rate_limited_total", scope="client_rpm") == 1
    assert delta("keyway_rate_limited_total") == 1
    # four admissions (the 404 never reaches Redis), one more key after the 429
    assert delta("keyway_redis_script_duration_seconds_count", script="admit+acquire") == 4
    assert delta("keyway_redis_script_duration_seconds_count", script="acquire") == 1
    tokens_in = sum(a.json()["usage"]["prompt_tokens"] for a in answers)
    tokens_out = sum(a.json()["usage"]["completion_tokens"] for a in answers)
    assert tokens_in > 0 and tokens_out > 0
    assert delta("keyway_tokens_total", model="gpt-4o-mini", direction="input") == tokens_in
    assert delta("keyway_tokens_total", model="gpt-4o-mini", direction="output") == tokens_out
    cost = sum(
        round(
            a.json()["usage"]["prompt_tokens"] * 0.15 + a.json()["usage"]["completion_tokens"] * 0.6
        )
        for a in answers
    )
    assert delta("keyway_cost_microdollars_total", model="gpt-4o-mini") == cost
    # the key that answered 429 is cooling down; the ones that answered are not
    cooling = {dict(ls)["key_id"] for (n, ls), v in after.items()
               if n == "keyway_key_state" and dict(ls)["state"] == "cooling" and v == 1}  # fmt: skip
    assert len(cooling) == 1
    assert answers[0].headers["x-keyway-key"] not in cooling
    assert total(after, "keyway_degraded_mode") == 0
    assert total(brewed, "proxy_requests_total", method="OTHER", status="405") == 1
    assert ("method", "BREW") not in _labels(brewed)
    for samples in again:
        assert total(samples, "keyway_requests_total") == total(after, "keyway_requests_total")
        assert total(samples, "keyway_upstream_attempts_total") == total(
            after, "keyway_upstream_attempts_total"
        )


# -- 3. structured access log, and no secret anywhere in the log --------------------------------

UPSTREAM_CANARY = "sk-canary-upstream-secret"
CLIENT_CANARY = "sk-canary-client-secret-0001"
WRONG_CANARY = "sk-canary-wrong-client-key-0002"


def test_one_json_access_line_per_request_and_no_secret(
    logs: Path, redis_url: str, fake: FakeControl, prefix: dict[str, str]
) -> None:
    config = make_config(
        fake.url,
        key_prefix=UPSTREAM_CANARY,
        extra_clients=f'  - {{id: canary, key: {CLIENT_CANARY}, models: ["*"]}}\n',
    )
    gw = start_gateway(
        logs, config, redis_url=redis_url, env={**prefix, "KEYWAY_LOG_FORMAT": "json"}
    )
    try:
        plain = chat(gw.url, CLIENT_CANARY, headers={"traceparent": TRACEPARENT})
        streamed = chat(gw.url, CLIENT_CANARY, stream=True)
        fake.fault("*", "401", count=1)  # one upstream key refused: disabled, logged, retried
        refused_once = chat(gw.url, CLIENT_CANARY)
        unknown = chat(gw.url, CLIENT_CANARY, model="no-such-model")
        wrong_key = chat(gw.url, WRONG_CANARY)
        responses = [plain, streamed, refused_once, unknown, wrong_key]
        assert [x.status_code for x in responses] == [200, 200, 200, 404, 401]

        def access_lines() -> list[dict[str, Any]]:
            return [
                line
                for line in map(msgspec.json.decode, gw.log_path.read_bytes().splitlines())
                if line.get("msg") == "request"
            ]

        poll(lambda: len(access_lines()) >= len(responses))
    finally:
        gw.stop()
    log_text = gw.log_path.read_text()
    lines = log_text.splitlines()
    # every line, Keyway's and Granian's, is one JSON object
    records = [msgspec.json.decode(line) for line in lines if line.strip()]
    assert all(isinstance(x, dict) and "ts" in x and "level" in x for x in records)
    access = [x for x in records if x["msg"] == "request"]
    assert [x["request_id"] for x in access] == [x.headers["x-request-id"] for x in responses]

    first, stream_line, retried, missing, anonymous = access
    usage = plain.json()["usage"]
    assert first == first | {
        "route": CHAT_ROUTE, "method": "POST", "status": 200, "trace_id": TRACE_ID,
        "client_id": "canary", "model": "gpt-4o-mini", "deployment": "fake/gpt-4o-mini",
        "key_id": plain.headers["x-keyway-key"], "attempts": 1, "stream": False,
        "tokens_in": usage["prompt_tokens"], "tokens_out": usage["completion_tokens"],
        "ttft_ms": -1.0, "error": "",
    }  # fmt: skip
    assert first["latency_ms"] > 0
    assert first["key_id"] in {"k1", "k2", "k3"}

    chunks = [
        msgspec.json.decode(e[6:]) for e in streamed.text.split("\n\n") if e.startswith("data: {")
    ]
    stream_usage = next(c["usage"] for c in chunks if c.get("usage"))
    assert stream_line["stream"] is True
    assert 0 <= stream_line["ttft_ms"] <= stream_line["latency_ms"]
    assert (stream_line["tokens_in"], stream_line["tokens_out"]) == (
        stream_usage["prompt_tokens"], stream_usage["completion_tokens"],
    )  # fmt: skip
    assert stream_line["trace_id"] == ""  # no traceparent, tracing off: no trace to name

    assert (retried["status"], retried["attempts"]) == (200, 2)
    assert retried["key_id"] == refused_once.headers["x-keyway-key"]
    assert (missing["status"], missing["error"], missing["attempts"]) == (404, "model_not_found", 0)
    assert (anonymous["status"], anonymous["error"], anonymous["client_id"]) == (
        401, "invalid_api_key", "",
    )  # fmt: skip

    # the key refused upstream was logged (by id), and no secret reached the log in any form
    assert any("answered 401" in x["msg"] for x in records)
    for secret in (UPSTREAM_CANARY, CLIENT_CANARY, WRONG_CANARY, "sk-client-a", "sk-ant-fake"):
        assert secret not in log_text


# -- 4. degraded mode shows on /metrics while Redis is away ---------------------------------------


def test_degraded_mode_gauge_follows_redis(procs: ExitStack, logs: Path, fake: FakeControl) -> None:
    store = procs.enter_context(start_redis(logs))
    gw = procs.enter_context(
        start_gateway(
            logs, make_config(fake.url), redis_url=f"redis://127.0.0.1:{store.port}/0", workers=2
        )
    )

    def degraded() -> float:
        return total(scrape(gw.url), "keyway_degraded_mode")

    try:
        assert degraded() == 0
        store.stop()
        answer = chat(gw.url)  # served on the local share of the limits
        assert answer.status_code == 200
        assert answer.headers["x-keyway-degraded"] == "redis-unavailable"
        poll(lambda: degraded() == 1)
        assert degraded() == 1
        store = procs.enter_context(start_redis(logs, port=store.port))
        poll(lambda: degraded() == 0)  # the heartbeat notices Redis is back
        assert degraded() == 0
    finally:
        gw.stop()
        store.stop()
