"""The OpenAI Responses API (`client.responses.create`) through a running Keyway, with the SDK.

Routed by alias like chat: the body passes through, the key is chosen, limited, retried and
settled the same way, and the answer (JSON, or the typed event stream) comes back as the
upstream sent it. Anthropic deployments do not speak it: an alias with nothing else is a 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.harness import FakeControl, Proc, make_config, start_gateway

ADMIN_KEY = "admin-key-for-responses-tests"
MIXED = """  mixed:
    deployments:
      - {provider: fake-anthropic, model: claude-3-5-haiku-latest}
      - {provider: fake, model: gpt-4o-mini}
"""
TEXT = "Hello from fake provider"


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    config = make_config(
        fake_proc.url,
        extra_clients="  - {id: tiny, key: sk-client-tiny, rpm: 2}\n"
        "  - {id: metered, key: sk-client-metered}\n",
    ).replace("models:\n", "models:\n" + MIXED, 1)
    env = {"KEYWAY_REDIS_PREFIX": f"e2e-responses-{time.time_ns()}",
           "KEYWAY_ADMIN_KEYS": ADMIN_KEY, "KEYWAY_CLIENT_KEY_SECRET": "s" * 32}  # fmt: skip
    proc = start_gateway(logs, config, redis_url=redis_url, env=env)
    yield proc
    proc.stop()


@pytest.fixture()
def client(gateway: Proc) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-a", max_retries=0)


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    """Poll for an eventual condition (settlement runs in the background)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s}s: {what}")
        time.sleep(0.05)


def test_create_goes_through_one_of_the_upstream_keys(client: OpenAI, fake: FakeControl) -> None:
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini",
        input="Say hello",
        store=False,
        extra_body={"vendor_knob": {"nested": [1, 2]}},
    )
    response = raw.parse()
    assert raw.headers["x-keyway-key"] in {"k1", "k2", "k3"}
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text.startswith(TEXT)
    assert response.usage is not None and response.usage.output_tokens > 0
    seen = fake.last_request()
    assert seen["path"] == "/v1/responses"
    assert "sk-client-a" not in str(seen["headers"])
    assert seen["body"]["vendor_knob"] == {"nested": [1, 2]}  # the client's bytes, untouched
    assert seen["body"]["store"] is False
    assert sum(fake.requests_by_key().values()) == 1


def test_an_alias_is_rewritten_to_the_upstream_model(client: OpenAI, fake: FakeControl) -> None:
    response = client.responses.create(model="renamed", input="hi", previous_response_id="resp_x")
    body = fake.last_request()["body"]
    assert body["model"] == "gpt-4o" and body["previous_response_id"] == "resp_x"
    assert response.model == "gpt-4o"


def test_stream_arrives_event_by_event_with_the_final_usage(client: OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert kinds.count("response.output_text.delta") > 1 and text.startswith(TEXT)
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text
    assert final.usage is not None and final.usage.output_tokens > 0


def test_the_sdk_stream_helper_gets_the_final_response(client: OpenAI) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas)


def test_a_capped_answer_streams_to_response_incomplete(client: OpenAI) -> None:
    events = list(
        client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=2, stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage.output_tokens == 2  # type: ignore[union-attr]


def test_a_429_on_one_key_moves_to_another(client: OpenAI, fake: FakeControl) -> None:
    fake.fault("*", "429", count=1, retry_after_s=1)  # whichever key is tried first
    try:
        raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi")
    finally:
        fake.clear_faults()
    assert raw.parse().output_text.startswith(TEXT)
    assert raw.headers["x-keyway-attempts"] == "2"
    tried = fake.requests_by_key()
    assert len(tried) == 2 and set(tried.values()) == {1}


def test_a_cut_stream_raises_instead_of_ending_cleanly(client: OpenAI, fake: FakeControl) -> None:
    fake.fault("*", "cut", count=1)
    try:
        stream = client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    finally:
        fake.clear_faults()
    assert caught.value.code == "upstream_cut"


def test_client_rate_limit_is_rate_limit_error_with_retry_after(gateway: Proc) -> None:
    tiny = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-tiny", max_retries=0)
    for _ in range(2):
        tiny.responses.create(model="gpt-4o-mini", input="x")
    with pytest.raises(openai.RateLimitError) as caught:
        tiny.responses.create(model="gpt-4o-mini", input="x")
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.code == "client_rpm"


def test_an_anthropic_only_alias_is_a_bad_request(client: OpenAI, fake: FakeControl) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude-haiku", input="hi")
    assert caught.value.code == "unsupported_endpoint"
    body: Any = caught.value.body
    assert body["param"] == "model" and "Responses API" in body["message"]
    assert fake.requests_by_key() == {}


def test_an_alias_skips_its_anthropic_deployment(client: OpenAI, fake: FakeControl) -> None:
    raw = client.responses.with_raw_response.create(model="mixed", input="hi")
    assert raw.parse().output_text.startswith(TEXT)
    assert raw.headers["x-keyway-key"] in {"k1", "k2", "k3"}
    assert fake.last_request()["path"] == "/v1/responses"


def test_usage_is_charged_to_the_client(gateway: Proc) -> None:
    metered = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-metered", max_retries=0)
    plain = metered.responses.create(model="gpt-4o-mini", input="count me")
    events = list(metered.responses.create(model="gpt-4o-mini", input="me too", stream=True))
    streamed = events[-1].response.usage  # type: ignore[union-attr]
    assert plain.usage is not None and streamed is not None
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}

    def hour() -> dict[str, Any]:
        view = httpx.get(f"{gateway.url}/admin/usage/clients/metered", headers=admin,
                         params={"period": "hour", "last": 1}, timeout=10)  # fmt: skip
        assert view.status_code == 200, view.text
        total: dict[str, Any] = view.json()["total"]
        return total

    wait_until(lambda: hour()["requests"] == 2, "both requests settled")
    total = hour()
    assert total["tokens_in"] == plain.usage.input_tokens + streamed.input_tokens
    assert total["tokens_out"] == plain.usage.output_tokens + streamed.output_tokens
    assert total["cost_usd"] > 0 and total["errors"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"input": "hi"}', "model"),
        (b'{"model": 5, "input": "hi"}', "model"),
        (b'{"model": "", "input": "hi"}', "model"),
        (b'{"model": "gpt-4o-mini", "input": "hi", "stream": "yes"}', "stream"),
        (b'{"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 0}', "max_output_tokens"),
        (b'{"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": "many"}',
         "max_output_tokens"),
    ],
)  # fmt: skip
def test_bad_routed_fields_are_a_400_in_openai_shape(
    gateway: Proc, fake: FakeControl, body: bytes, param: str | None
) -> None:
    r = httpx.post(
        f"{gateway.url}/v1/responses",
        content=body,
        headers={"authorization": "Bearer sk-client-a", "content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    assert fake.requests_by_key() == {}


def test_null_stream_and_max_output_tokens_mean_not_given(gateway: Proc) -> None:
    r = httpx.post(
        f"{gateway.url}/v1/responses",
        json={"model": "gpt-4o-mini", "input": "hi", "stream": None, "max_output_tokens": None},
        headers={"authorization": "Bearer sk-client-a"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "response"


def test_wrong_method_is_405_in_openai_shape(gateway: Proc) -> None:
    r = httpx.get(f"{gateway.url}/v1/responses", headers={"authorization": "Bearer sk-client-a"})
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
