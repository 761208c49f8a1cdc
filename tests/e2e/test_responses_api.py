"""The OpenAI Responses API (`client.responses.create`) through a running Keyway, with the SDK.

Routed by alias like chat: the body passes through, the key is chosen, limited, retried and
settled the same way, and the answer (JSON, or the typed event stream) comes back as the
upstream sent it. On an Anthropic deployment it is translated both ways (request -> Messages,
message and event stream -> the Responses shapes), as chat is.
"""

from __future__ import annotations

import json
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
    config = (
        make_config(
            fake_proc.url,
            extra_clients="  - {id: tiny, key: sk-client-tiny, rpm: 2}\n"
            "  - {id: metered, key: sk-client-metered}\n"
            "  - {id: metered-claude, key: sk-client-metered-claude}\n",
        )
        .replace("models:\n", "models:\n" + MIXED, 1)
        .replace("prices:\n", "prices:\n  claude-3-5-haiku-latest: {input: 0.80, output: 4.0}\n", 1)
    )
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


def test_an_alias_serves_it_from_its_first_deployment_anthropic_included(
    client: OpenAI, fake: FakeControl
) -> None:
    raw = client.responses.with_raw_response.create(model="mixed", input="hi")
    assert raw.parse().output_text.startswith(TEXT)
    assert raw.headers["x-keyway-key"] == "a1"
    assert fake.last_request()["path"] == "/v1/messages"


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


# -- on an Anthropic deployment: translated both ways ---------------------------------------

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False},
           "strict": True}  # fmt: skip


def test_an_anthropic_alias_answers_with_a_response(client: OpenAI, fake: FakeControl) -> None:
    raw = client.responses.with_raw_response.create(
        model="claude-haiku", input="Say hello", instructions="Be brief.", store=True
    )
    response = raw.parse()
    assert raw.headers["x-keyway-key"] == "a1"
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.store is False  # nothing is stored
    assert response.output_text.startswith(TEXT)
    assert response.model == "claude-3-5-haiku-latest"
    assert response.instructions == "Be brief."
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    seen = fake.last_request()
    assert seen["path"] == "/v1/messages"
    assert seen["body"]["system"] == "Be brief."
    assert seen["body"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert seen["body"]["model"] == "claude-3-5-haiku-latest" and seen["body"]["max_tokens"] > 0


def test_an_anthropic_alias_streams_typed_events_with_the_final_usage(client: OpenAI) -> None:
    events = list(client.responses.create(model="claude-haiku", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert kinds.count("response.output_text.delta") > 1 and text.startswith(TEXT)
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


def test_the_sdk_stream_helper_works_on_an_anthropic_alias(client: OpenAI) -> None:
    with client.responses.stream(model="claude-haiku", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.output_text.startswith(TEXT)
    assert final.usage is not None and final.usage.input_tokens > 0


def test_an_agent_loop_with_function_tools_on_an_anthropic_alias(
    client: OpenAI, fake: FakeControl
) -> None:
    """What the OpenAI Agents SDK does: send the output items back with the function's output."""
    question: dict[str, Any] = {"role": "user", "content": "Weather in Nice?"}
    first = client.responses.create(model="claude-haiku", input=[question], tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("toolu_") and "city" in json.loads(call.arguments)
    history = [item.model_dump(exclude_none=True) for item in first.output]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "21°C"}
    second = client.responses.create(
        model="claude-haiku", input=[question, *history, result], tools=[WEATHER]
    )
    assert second.output_text.startswith(TEXT)
    turns = fake.last_request()["body"]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0]["id"] == turns[2]["content"][0]["tool_use_id"] == call.call_id


def test_a_streamed_function_call_on_an_anthropic_alias(client: OpenAI) -> None:
    events = list(
        client.responses.create(model="claude-haiku", input="Weather?", tools=[WEATHER],
                                tool_choice="required", stream=True)
    )  # fmt: skip
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert pieces and "".join(pieces) == done.arguments
    (call,) = events[-1].response.output  # type: ignore[union-attr]
    assert call.type == "function_call" and json.loads(call.arguments) == json.loads(done.arguments)


def test_a_capped_answer_is_incomplete_on_an_anthropic_alias(client: OpenAI) -> None:
    capped = client.responses.create(model="claude-haiku", input="hi", max_output_tokens=2)
    assert capped.status == "incomplete"
    assert capped.incomplete_details is not None
    assert capped.incomplete_details.reason == "max_output_tokens"
    events = list(
        client.responses.create(model="claude-haiku", input="hi", max_output_tokens=2, stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage.output_tokens == 2  # type: ignore[union-attr]


def test_a_cut_anthropic_stream_raises_instead_of_ending_cleanly(
    client: OpenAI, fake: FakeControl
) -> None:
    fake.fault("*", "cut", count=1)
    try:
        stream = client.responses.create(model="claude-haiku", input="hi", stream=True)
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    finally:
        fake.clear_faults()
    assert caught.value.code == "upstream_cut"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_what_anthropic_cannot_honour_is_a_400_naming_it(
    client: OpenAI, fake: FakeControl, fields: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": "claude-haiku", "input": "hi", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**body)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param
    assert fake.requests_by_key() == {}


def test_an_anthropic_rejection_reaches_the_client_in_openai_shape(
    client: OpenAI, fake: FakeControl
) -> None:
    fake.fault("*", "400", count=1)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="claude-haiku", input="hi")
    finally:
        fake.clear_faults()
    body: Any = caught.value.body
    assert body["type"] == "invalid_request_error" and body["message"]


def test_usage_on_an_anthropic_alias_is_charged_to_the_client(gateway: Proc) -> None:
    metered = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-metered-claude",
                     max_retries=0)  # fmt: skip
    plain = metered.responses.create(model="claude-haiku", input="count me")
    events = list(metered.responses.create(model="claude-haiku", input="me too", stream=True))
    streamed = events[-1].response.usage  # type: ignore[union-attr]
    assert plain.usage is not None and streamed is not None
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}

    def hour() -> dict[str, Any]:
        view = httpx.get(f"{gateway.url}/admin/usage/clients/metered-claude", headers=admin,
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
