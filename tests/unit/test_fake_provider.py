"""The fake upstream provider: OpenAI, Azure and Anthropic wire shapes, faults, stats, and Granian."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import struct
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from gateway.fake_provider import app as app_module
from gateway.fake_provider import asgi as asgi_module
from gateway.fake_provider.app import create_app
from gateway.fake_provider.asgi import read_body
from gateway.fake_provider.dialect import go_duration
from gateway.fake_provider.ledger import RECENT
from gateway.fake_provider.schema_value import document_for
from gateway.fake_provider.settings import FakeSettings
from gateway.translate.output_limits import known_max_output_tokens
from tests.harness import start_fake_provider

KEY = "sk-test-0123456789abcdef"
MASKED = KEY[-8:]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in one line."}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    },
}
MESSAGES = {
    "model": "claude-haiku-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Say hello."}],
}
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def openai_headers(key: str = KEY, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **extra}


def anthropic_headers(key: str = KEY, **extra: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01", **extra}


def make_client(
    settings: FakeSettings | None = None, raise_app_exceptions: bool = True
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=create_app(settings), raise_app_exceptions=raise_app_exceptions
    )
    return httpx.AsyncClient(transport=transport, base_url="http://fake")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


def sse_data(text: str) -> list[Any]:
    """The ``data:`` payloads of an OpenAI stream, ``[DONE]`` kept as the string."""
    payloads: list[Any] = []
    for frame in text.split("\n\n"):
        if frame:
            assert frame.startswith("data: "), frame
            data = frame[len("data: ") :]
            payloads.append(data if data == "[DONE]" else msgspec.json.decode(data))
    return payloads


def sse_events(text: str) -> list[tuple[str, Any]]:
    """The ``(event, data)`` pairs of an Anthropic stream."""
    events = []
    for frame in text.split("\n\n"):
        if frame:
            event_line, data_line = frame.split("\n")
            assert event_line.startswith("event: ") and data_line.startswith("data: "), frame
            events.append(
                (event_line[len("event: ") :], msgspec.json.decode(data_line[len("data: ") :]))
            )
    return events


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/_fake/stats")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def arm(client: httpx.AsyncClient, **fault: Any) -> None:
    response = await client.post("/_fake/faults", json=fault)
    assert response.status_code == 200, response.text


# -- OpenAI -----------------------------------------------------------------------------------


async def test_chat_completion_is_a_realistic_openai_object(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello from fake provider (key ...cdef)"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == len("Say hello in one line.") // 4 + 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.headers["x-request-id"].startswith("req_")
    assert (
        int(response.headers["x-ratelimit-remaining-requests"])
        == int(response.headers["x-ratelimit-limit-requests"]) - 1
    )
    assert int(response.headers["x-ratelimit-remaining-tokens"]) < int(
        response.headers["x-ratelimit-limit-tokens"]
    )
    assert GO_DURATION.match(response.headers["x-ratelimit-reset-requests"])
    assert GO_DURATION.match(response.headers["x-ratelimit-reset-tokens"])


async def test_max_tokens_cuts_the_answer_short(client: httpx.AsyncClient) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, field: 2}, headers=openai_headers()
        )
        body = response.json()
        assert body["usage"]["completion_tokens"] == 2
        assert body["choices"][0]["message"]["content"] == "Hello from"
        assert body["choices"][0]["finish_reason"] == "length"


async def test_chat_stream_follows_openai_chunk_order_with_usage(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())).json()
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_data(response.text)
    assert chunks[-1] == "[DONE]"
    first, *deltas, finish, usage_chunk, _ = chunks
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert len(deltas) == 5
    assert (
        "".join(c["choices"][0]["delta"]["content"] for c in deltas)
        == plain["choices"][0]["message"]["content"]
    )
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["usage"] is None for c in [first, *deltas, finish])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == plain["usage"]
    assert len({c["id"] for c in chunks[:-1]}) == 1


async def test_chat_stream_without_include_usage_has_no_usage_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers=openai_headers()
    )
    chunks = sse_data(response.text)
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("path", "request_body", "kind"),
    [
        ("/v1/chat/completions", CHAT, "chat.completion"),
        (
            "/v1/completions",
            {"model": "gpt-3.5-turbo-instruct", "prompt": "Once"},
            "text_completion",
        ),
    ],
)
async def test_null_stream_and_stream_options_mean_not_streaming(
    client: httpx.AsyncClient, path: str, request_body: dict[str, Any], kind: str
) -> None:
    """As api.openai.com: null is "not given", not a 400."""
    nulls = {**request_body, "stream": None, "stream_options": None}
    response = await client.post(path, json=nulls, headers=openai_headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["object"] == kind


async def test_null_stream_options_and_include_usage_stream_without_usage(
    client: httpx.AsyncClient,
) -> None:
    for options in (None, {"include_usage": None}):
        request = {**CHAT, "stream": True, "stream_options": options}
        response = await client.post("/v1/chat/completions", json=request, headers=openai_headers())
        assert response.status_code == 200, response.text
        chunks = sse_data(response.text)
        assert chunks[-1] == "[DONE]"
        assert all("usage" not in c for c in chunks[:-1])


async def test_tools_get_a_tool_call_with_schema_shaped_arguments(
    client: httpx.AsyncClient,
) -> None:
    request = {**CHAT, "tools": [WEATHER_TOOL, {**WEATHER_TOOL, "function": {"name": "other"}}]}
    body = (
        await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    ).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert msgspec.json.decode(call["function"]["arguments"]) == {"city": "fake", "unit": "c"}


async def test_streamed_tool_call_spreads_arguments_over_several_deltas(
    client: httpx.AsyncClient,
) -> None:
    request = {**CHAT, "tools": [WEATHER_TOOL], "stream": True}
    chunks = sse_data(
        (await client.post("/v1/chat/completions", json=request, headers=openai_headers())).text
    )
    first_call = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call["id"].startswith("call_")
    assert first_call["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-2]
    ]
    assert len(pieces) > 1
    assert msgspec.json.decode("".join(pieces)) == {"city": "fake", "unit": "c"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_result_gets_a_text_answer(client: httpx.AsyncClient) -> None:
    messages = [
        *CHAT["messages"],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    request = {"model": "gpt-4o", "messages": messages, "tools": [WEATHER_TOOL]}
    body = (
        await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    ).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"].startswith("Hello from fake provider")


async def test_legacy_completion_and_its_stream(client: httpx.AsyncClient) -> None:
    request = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"}
    body = (await client.post("/v1/completions", json=request, headers=openai_headers())).json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == len("Once upon a time") // 4 + 1
    stream = {**request, "stream": True, "stream_options": {"include_usage": True}}
    chunks = sse_data(
        (await client.post("/v1/completions", json=stream, headers=openai_headers())).text
    )
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == body["usage"]
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["text"] for c in chunks[:-2]) == body["choices"][0]["text"]


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    one = (
        await client.post(
            "/v1/embeddings", json={"model": "e", "input": "abc"}, headers=openai_headers()
        )
    ).json()
    assert one["object"] == "list" and one["model"] == "e"
    (item,) = one["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 8
    assert math.isclose(sum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-9)
    assert one["usage"] == {"prompt_tokens": 1, "total_tokens": 1}

    many = (
        await client.post(
            "/v1/embeddings",
            json={"model": "e", "input": ["abc", "xyz"], "dimensions": 16},
            headers=openai_headers(),
        )
    ).json()
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 16 for d in many["data"])
    assert many["data"][0]["embedding"] != many["data"][1]["embedding"]
    again = (
        await client.post(
            "/v1/embeddings", json={"model": "e", "input": "abc"}, headers=openai_headers()
        )
    ).json()
    assert again["data"][0]["embedding"] == item["embedding"]

    encoded = (
        await client.post(
            "/v1/embeddings",
            json={"model": "e", "input": "abc", "encoding_format": "base64"},
            headers=openai_headers(),
        )
    ).json()
    floats = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert floats == pytest.approx(item["embedding"], rel=1e-6)


async def test_models_list_in_both_dialects() -> None:
    async with make_client(FakeSettings(models=("m-1", "m-2"))) as client:
        openai = (await client.get("/v1/models", headers=openai_headers())).json()
        assert openai["object"] == "list"
        assert [m["id"] for m in openai["data"]] == ["m-1", "m-2"]
        assert all(m["object"] == "model" for m in openai["data"])
        anthropic = (await client.get("/v1/models", headers=anthropic_headers())).json()
        assert [m["id"] for m in anthropic["data"]] == ["m-1", "m-2"]
        assert anthropic["has_more"] is False and anthropic["first_id"] == "m-1"


# -- the Responses API ------------------------------------------------------------------------

RESPONSES = {"model": "gpt-4o-mini", "input": "Say hello in one line."}
RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


async def test_response_is_a_realistic_response_object(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/responses", json=RESPONSES, headers=openai_headers())
    assert response.status_code == 200, response.text
    assert "x-ratelimit-remaining-requests" in response.headers
    body = response.json()
    assert body["id"].startswith("resp_")
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["model"] == "gpt-4o-mini" and isinstance(body["created_at"], int)
    assert body["error"] is None and body["incomplete_details"] is None
    [message] = body["output"]
    assert message["type"] == "message" and message["id"].startswith("msg_")
    assert message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [
        {
            "type": "output_text",
            "text": "Hello from fake provider (key ...cdef)",
            "annotations": [],
            "logprobs": [],
        }
    ]
    assert body["usage"] == {
        "input_tokens": len("Say hello in one line.") // 4 + 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": len("Say hello in one line.") // 4 + 1 + 6,
    }


async def test_response_stream_is_typed_events_ending_with_the_whole_response(
    client: httpx.AsyncClient,
) -> None:
    plain = (await client.post("/v1/responses", json=RESPONSES, headers=openai_headers())).json()
    request = {**RESPONSES, "stream": True}
    response = await client.post("/v1/responses", json=request, headers=openai_headers())
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [name for name, _ in events] == RESPONSE_EVENTS
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert "[DONE]" not in response.text
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["usage"] is None and created["id"] == completed["id"]
    deltas = "".join(data["delta"] for name, data in events if name.endswith(".delta"))
    assert deltas == plain["output"][0]["content"][0]["text"]
    assert events[-4][1]["text"] == deltas  # response.output_text.done
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == deltas
    assert completed["usage"] == plain["usage"]


async def test_max_output_tokens_makes_the_response_incomplete(client: httpx.AsyncClient) -> None:
    request = {**RESPONSES, "max_output_tokens": 2}
    body = (await client.post("/v1/responses", json=request, headers=openai_headers())).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["content"][0]["text"] == "Hello from"
    assert body["usage"]["output_tokens"] == 2
    streamed = await client.post(
        "/v1/responses", json={**request, "stream": True}, headers=openai_headers()
    )
    name, data = sse_events(streamed.text)[-1]
    assert name == "response.incomplete" and data["response"]["usage"]["output_tokens"] == 2


async def test_response_function_tools_and_the_end_of_the_agent_loop(
    client: httpx.AsyncClient,
) -> None:
    tool = {"type": "function", "name": "get_weather",
            "parameters": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]  # fmt: skip
    request = {**RESPONSES, "tools": [tool]}
    body = (await client.post("/v1/responses", json=request, headers=openai_headers())).json()
    [call] = body["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert call["call_id"].startswith("call_") and call["status"] == "completed"
    assert msgspec.json.decode(call["arguments"]) == {"city": "fake", "unit": "c"}
    streamed = await client.post(
        "/v1/responses", json={**request, "stream": True}, headers=openai_headers()
    )
    events = sse_events(streamed.text)
    pieces = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(pieces) >= 2 and "".join(pieces) == call["arguments"]
    assert events[-1][0] == "response.completed"
    follow_up = {
        **request,
        "input": [
            {"role": "user", "content": "weather?"},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        ],
    }
    answer = (await client.post("/v1/responses", json=follow_up, headers=openai_headers())).json()
    assert answer["output"][0]["type"] == "message"


async def test_responses_need_a_model_a_bearer_key_and_sane_tools(
    client: httpx.AsyncClient,
) -> None:
    missing_model = await client.post(
        "/v1/responses", json={"input": "hi"}, headers=openai_headers()
    )
    assert missing_model.status_code == 400
    assert missing_model.json()["error"]["type"] == "invalid_request_error"
    no_key = await client.post("/v1/responses", json=RESPONSES, headers={"x-api-key": KEY})
    assert no_key.status_code == 401
    bad_tool = {"type": "function", "name": "f", "parameters": "AAA"}
    refused = await client.post(
        "/v1/responses", json={**RESPONSES, "tools": [bad_tool]}, headers=openai_headers()
    )
    assert refused.status_code == 400
    assert "tools[0].parameters" in refused.json()["error"]["message"]
    nulls = {**RESPONSES, "stream": None, "max_output_tokens": None}
    answered = await client.post("/v1/responses", json=nulls, headers=openai_headers())
    assert answered.status_code == 200 and answered.json()["object"] == "response"


async def test_azure_v1_responses_path_takes_api_key_and_model_from_the_body(
    client: httpx.AsyncClient,
) -> None:
    request = {**RESPONSES, "model": "my-deployment"}
    response = await client.post("/openai/v1/responses", json=request, headers={"api-key": KEY})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "my-deployment"
    missing = await client.post("/openai/v1/responses", json=request)
    assert missing.status_code == 401
    assert "api-key" in missing.json()["error"]["message"]


async def test_cut_fault_drops_a_response_stream_before_its_end() -> None:
    async with make_client(raise_app_exceptions=False) as client:
        await arm(client, key=KEY, mode="cut", count=1)
        request = {**RESPONSES, "stream": True}
        response = await client.post("/v1/responses", json=request, headers=openai_headers())
        assert response.text.startswith("event: response.created")
        assert "response.completed" not in response.text


async def test_azure_deployment_path_uses_api_key_and_deployment_as_model(
    client: httpx.AsyncClient,
) -> None:
    path = "/openai/deployments/my-gpt4o/chat/completions"
    response = await client.post(
        f"{path}?api-version=2024-10-21",
        json={"messages": CHAT["messages"]},
        headers={"api-key": KEY},
    )
    assert response.status_code == 200
    assert response.json()["model"] == "my-gpt4o"
    assert "x-ratelimit-remaining-requests" in response.headers
    without_version = await client.post(
        path, json={"messages": CHAT["messages"]}, headers={"api-key": KEY}
    )
    assert without_version.status_code == 404
    embeddings = await client.post(
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
        json={"input": "x"},
        headers={"api-key": KEY},
    )
    assert embeddings.json()["model"] == "emb"


async def test_missing_or_misplaced_key_is_401_in_the_endpoint_dialect(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.post("/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401
    error = missing.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    # OpenAI reads only the Bearer token: an Anthropic-style header must not authenticate.
    misplaced = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": KEY})
    assert misplaced.status_code == 401
    anthropic = await client.post("/v1/messages", json=MESSAGES)
    assert anthropic.status_code == 401
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }


async def test_malformed_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", content=b"{not json", headers=openai_headers()
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    unknown = await client.post("/v1/nope", json={}, headers=openai_headers())
    assert unknown.status_code == 404


# -- Anthropic --------------------------------------------------------------------------------


async def test_message_is_a_realistic_anthropic_object(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", json={**MESSAGES, "system": "Be brief."}, headers=anthropic_headers()
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == (
        "message",
        "assistant",
        "claude-haiku-4-5",
    )
    assert body["content"] == [{"type": "text", "text": "Hello from fake provider (key ...cdef)"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {
        "input_tokens": len("Be brief.Say hello.") // 4 + 1,
        "output_tokens": 6,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert response.headers["request-id"].startswith("req_")
    assert RFC3339.match(response.headers["anthropic-ratelimit-requests-reset"])
    assert RFC3339.match(response.headers["anthropic-ratelimit-tokens-reset"])
    assert int(response.headers["anthropic-ratelimit-requests-remaining"]) < int(
        response.headers["anthropic-ratelimit-requests-limit"]
    )


async def test_anthropic_requires_max_tokens_and_accepts_bearer(client: httpx.AsyncClient) -> None:
    request = {k: v for k, v in MESSAGES.items() if k != "max_tokens"}
    response = await client.post("/v1/messages", json=request, headers=anthropic_headers())
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    bearer = await client.post("/v1/messages", json=MESSAGES, headers=openai_headers())
    assert bearer.status_code == 200


async def test_anthropic_stream_has_the_exact_event_sequence(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())).json()
    response = await client.post(
        "/v1/messages", json={**MESSAGES, "stream": True}, headers=anthropic_headers()
    )
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == plain["content"][0]["text"]
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"output_tokens": plain["usage"]["output_tokens"]}


async def test_anthropic_tools_get_tool_use_json_and_streamed(client: httpx.AsyncClient) -> None:
    request = {**MESSAGES, "tools": [ANTHROPIC_TOOL]}
    body = (await client.post("/v1/messages", json=request, headers=anthropic_headers())).json()
    assert body["stop_reason"] == "tool_use"
    (block,) = body["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("get_weather", {"city": "fake", "days": 1})

    events = sse_events(
        (
            await client.post(
                "/v1/messages", json={**request, "stream": True}, headers=anthropic_headers()
            )
        ).text
    )
    assert events[1][1]["content_block"]["type"] == "tool_use"
    assert events[1][1]["content_block"]["input"] == {}
    partials = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert all(
        d["delta"]["type"] == "input_json_delta" for n, d in events if n == "content_block_delta"
    )
    assert len(partials) > 1
    assert msgspec.json.decode("".join(partials)) == {"city": "fake", "days": 1}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_count_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages/count_tokens", json=MESSAGES, headers=anthropic_headers()
    )
    assert response.json() == {"input_tokens": len("Say hello.") // 4 + 1}


# -- what the vendors refuse ------------------------------------------------------------------


async def openai_error(client: httpx.AsyncClient, path: str, request: dict[str, Any]) -> Any:
    response = await client.post(path, json=request, headers=openai_headers())
    assert response.status_code == 400, response.text
    assert "x-ratelimit-remaining-requests" in response.headers
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


async def anthropic_error(client: httpx.AsyncClient, path: str, request: dict[str, Any]) -> str:
    response = await client.post(path, json=request, headers=anthropic_headers())
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    message: str = body["error"]["message"]
    return message


async def test_openai_user_longer_than_64_characters_is_refused(client: httpx.AsyncClient) -> None:
    error = await openai_error(client, "/v1/chat/completions", {**CHAT, "user": "u" * 65})
    assert (error["param"], error["code"]) == ("user", "string_above_max_length")
    assert "maximum length 64, but got a string with length 65" in error["message"]
    response = await client.post(
        "/v1/chat/completions", json={**CHAT, "user": "u" * 64}, headers=openai_headers()
    )
    assert response.status_code == 200


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_openai_output_limit_above_the_models_is_refused(
    client: httpx.AsyncClient, field: str
) -> None:
    assert known_max_output_tokens("gpt-4o-mini") == 16384
    error = await openai_error(client, "/v1/chat/completions", {**CHAT, field: 16385})
    assert (error["param"], error["code"]) == (field, "invalid_value")
    assert error["message"].startswith(f"{field} is too large: 16385.")
    assert "at most 16384 completion tokens" in error["message"]
    for model, value in (("gpt-4o-mini", 16384), ("a-model-of-my-own", 10**6)):
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "model": model, field: value},
            headers=openai_headers(),
        )  # fmt: skip
        assert response.status_code == 200, response.text


async def test_anthropic_refuses_a_system_turn_and_roles_it_does_not_know(
    client: httpx.AsyncClient,
) -> None:
    system_turn = {**MESSAGES, "messages": [{"role": "system", "content": "Be brief."},
                                            *MESSAGES["messages"]]}  # type: ignore[misc]  # fmt: skip
    message = await anthropic_error(client, "/v1/messages", system_turn)
    assert message.startswith('messages: Unexpected role "system".')
    assert "top-level `system` parameter" in message
    counted = await anthropic_error(client, "/v1/messages/count_tokens", system_turn)
    assert counted == message
    tool_turn = {**MESSAGES, "messages": [*MESSAGES["messages"], {"role": "tool", "content": "x"}]}  # type: ignore[misc]
    assert await anthropic_error(client, "/v1/messages", tool_turn) == (
        "messages.1.role: Input should be 'user' or 'assistant'"
    )
    top_level = {**MESSAGES, "system": "Be brief."}
    response = await client.post("/v1/messages", json=top_level, headers=anthropic_headers())
    assert response.status_code == 200


async def test_anthropic_refuses_a_request_without_max_tokens_or_above_the_models_limit(
    client: httpx.AsyncClient,
) -> None:
    request = {k: v for k, v in MESSAGES.items() if k != "max_tokens"}
    assert await anthropic_error(client, "/v1/messages", request) == "max_tokens: Field required"
    assert known_max_output_tokens("claude-haiku-4-5") == 64000
    assert await anthropic_error(client, "/v1/messages", {**MESSAGES, "max_tokens": 64001}) == (
        "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for "
        "claude-haiku-4-5"
    )
    for model, value in (("claude-haiku-4-5", 64000), ("a-model-of-my-own", 10**6)):
        response = await client.post(
            "/v1/messages", json={**MESSAGES, "model": model, "max_tokens": value},
            headers=anthropic_headers(),
        )  # fmt: skip
        assert response.status_code == 200, response.text


STRICT_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "array", "items": {"$ref": "#/$defs/Day"}},
        "sky": {"enum": ["clear", "cloudy"]},
    },
    "required": ["city", "days", "sky"],
    "additionalProperties": False,
    "$defs": {
        "Day": {
            "type": "object",
            "properties": {"warm": {"type": "boolean"}, "high": {"type": ["integer", "null"]}},
            "required": ["warm", "high"],
            "additionalProperties": False,
        }
    },
}
STRICT_DOCUMENT = {"city": "x", "days": [{"warm": True, "high": 1}], "sky": "clear"}
"""The smallest document STRICT_SCHEMA accepts."""
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "forecast", "schema": STRICT_SCHEMA, "strict": True},
}


async def test_chat_json_schema_format_answers_a_document_of_the_schema(
    client: httpx.AsyncClient,
) -> None:
    request = {**CHAT, "response_format": JSON_SCHEMA_FORMAT}
    body = (
        await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    ).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert msgspec.json.decode(choice["message"]["content"]) == STRICT_DOCUMENT
    chunks = sse_data(
        (
            await client.post(
                "/v1/chat/completions", json={**request, "stream": True}, headers=openai_headers()
            )
        ).text
    )
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert len(pieces) > 1 and "".join(pieces) == choice["message"]["content"]


async def test_chat_json_object_format_answers_an_object_when_the_messages_say_json(
    client: httpx.AsyncClient,
) -> None:
    json_mode = {"type": "json_object"}
    error = await openai_error(
        client, "/v1/chat/completions", {**CHAT, "response_format": json_mode}
    )
    assert error["param"] == "messages" and "must contain the word 'json'" in error["message"]
    asked = {"role": "user", "content": [{"type": "text", "text": "Answer in JSON."}]}
    request = {**CHAT, "messages": [asked], "response_format": json_mode}
    body = (
        await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    ).json()
    assert body["choices"][0]["message"]["content"] == "{}"


async def test_strict_schemas_strict_mode_refuses_are_refused(client: httpx.AsyncClient) -> None:
    open_day = {**STRICT_SCHEMA["$defs"]["Day"], "additionalProperties": True}  # type: ignore[index]
    loose = {**STRICT_SCHEMA, "$defs": {"Day": open_day}}
    spec = {"name": "forecast", "schema": loose, "strict": True}
    error = await openai_error(
        client, "/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema", "json_schema": spec}}
    )  # fmt: skip
    assert error["param"] == "response_format"
    assert error["message"] == (
        "Invalid schema for response_format 'forecast': In context=('$defs', 'Day'), "
        "'additionalProperties' is required to be supplied and to be false."
    )
    optional = {**STRICT_SCHEMA, "required": ["city", "days"]}
    error = await openai_error(
        client, "/v1/responses",
        {**RESPONSES, "text": {"format": {"type": "json_schema", "name": "forecast",
                                          "schema": optional, "strict": True}}},
    )  # fmt: skip
    assert error["param"] == "text.format.schema"
    assert error["message"].endswith(
        "'required' is required to be supplied and to be an array including every key in "
        "properties. Missing 'sky'."
    )
    strict_tool = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}  # type: ignore[dict-item]
    error = await openai_error(client, "/v1/chat/completions", {**CHAT, "tools": [strict_tool]})
    assert error["param"] == "tools" and error["code"] == "invalid_function_parameters"
    assert error["message"].startswith("Invalid schema for function 'get_weather':")
    # the same schemas without strict mode are taken as they are
    for path, request in (
        ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema",
                                                              "json_schema": {**spec, "strict": False}}}),
        ("/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL]}),
        ("/v1/responses", {**RESPONSES, "text": {"format": {"type": "json_schema", "name": "f",
                                                            "schema": optional}}}),
    ):  # fmt: skip
        response = await client.post(path, json=request, headers=openai_headers())
        assert response.status_code == 200, response.text


async def test_responses_text_format_answers_a_document_and_is_echoed(
    client: httpx.AsyncClient,
) -> None:
    text = {"format": {"type": "json_schema", "name": "forecast", "schema": STRICT_SCHEMA,
                       "strict": True}}  # fmt: skip
    request = {**RESPONSES, "text": text}
    body = (await client.post("/v1/responses", json=request, headers=openai_headers())).json()
    assert body["text"] == text
    [message] = body["output"]
    document = message["content"][0]["text"]
    assert msgspec.json.decode(document) == STRICT_DOCUMENT
    events = sse_events(
        (
            await client.post(
                "/v1/responses", json={**request, "stream": True}, headers=openai_headers()
            )
        ).text
    )
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == document
    json_mode = {**RESPONSES, "text": {"format": {"type": "json_object"}}}
    body = (await client.post("/v1/responses", json=json_mode, headers=openai_headers())).json()
    assert body["output"][0]["content"][0]["text"] == "{}"


@pytest.mark.parametrize("spelling", ["output_config", "output_format"])
async def test_anthropic_output_format_answers_a_document_of_the_schema(
    client: httpx.AsyncClient, spelling: str
) -> None:
    output_format = {"type": "json_schema", "schema": STRICT_SCHEMA}
    field = {"format": output_format} if spelling == "output_config" else output_format
    request = {**MESSAGES, spelling: field}
    body = (await client.post("/v1/messages", json=request, headers=anthropic_headers())).json()
    assert body["stop_reason"] == "end_turn"
    [block] = body["content"]
    assert block["type"] == "text" and msgspec.json.decode(block["text"]) == STRICT_DOCUMENT
    events = sse_events(
        (
            await client.post(
                "/v1/messages", json={**request, "stream": True}, headers=anthropic_headers()
            )
        ).text
    )
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 1 and "".join(deltas) == block["text"]


async def test_a_tool_call_comes_before_the_structured_answer(client: httpx.AsyncClient) -> None:
    """An agent with tools and an output type: the fake calls the tool, then answers the schema."""
    request = {**CHAT, "tools": [WEATHER_TOOL], "response_format": JSON_SCHEMA_FORMAT}
    body = (
        await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    ).json()
    [call] = body["choices"][0]["message"]["tool_calls"]
    follow_up = {
        **request,
        "messages": [
            *CHAT["messages"],  # type: ignore[list-item]
            body["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ],
    }
    answer = (
        await client.post("/v1/chat/completions", json=follow_up, headers=openai_headers())
    ).json()
    assert msgspec.json.decode(answer["choices"][0]["message"]["content"]) == STRICT_DOCUMENT


@pytest.mark.parametrize(
    ("schema", "document"),
    [
        ({"type": "string"}, "x"),
        ({"type": "integer"}, 1),
        ({"type": "number"}, 1),
        ({"type": "boolean"}, True),
        ({"type": "null"}, None),
        ({"type": ["null", "string"]}, "x"),
        ({"enum": ["b", "a"]}, "b"),
        ({"const": 7}, 7),
        ({"type": "string", "format": "date-time"}, "2025-01-01T00:00:00Z"),
        ({"type": "string", "format": "uuid"}, "00000000-0000-4000-8000-000000000000"),
        ({"type": "string", "format": "text", "minLength": 3}, "xxx"),
        ({"type": "integer", "minimum": 5, "maximum": 9}, 5),
        ({"type": "number", "exclusiveMaximum": 0}, -1),
        ({"type": "array", "items": {"type": "integer"}}, [1]),
        ({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["x", "x"]),
        ({"type": "array", "items": {"type": "string"}, "maxItems": 0}, []),
        ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]}, ["x", True]),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, {}),
        ({"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"a": "x"}),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 1),
        ({"oneOf": [{"type": "boolean"}, {"type": "string"}]}, True),
        (
            {
                "allOf": [
                    {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"const": "c"}}, "required": ["b"]},
                ]
            },
            {"a": 1, "b": "c"},
        ),
        (
            {
                "$ref": "#/definitions/Node",
                "definitions": {
                    "Node": {
                        "type": "object",
                        "required": ["next"],
                        "properties": {
                            "next": {"anyOf": [{"$ref": "#/definitions/Node"}, {"type": "null"}]}
                        },
                    }
                },
            },
            "recursive",
        ),
        ({}, "x"),
        ("not a schema", {}),
    ],
)
def test_schema_documents_are_the_smallest_the_schema_accepts(schema: Any, document: Any) -> None:
    produced = document_for(schema)
    if document == "recursive":  # a few nodes deep, then the null branch ends it
        depth = 0
        while isinstance(produced, dict):
            produced, depth = produced["next"], depth + 1
        assert produced is None and 1 < depth < 5
        return
    assert produced == document
    assert type(produced) is type(document)


async def test_request_log_keeps_the_latest_requests_in_order(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())
    logged = (await client.get("/_fake/requests")).json()["requests"]
    assert [(r["path"], r["body"]) for r in logged] == [
        ("/v1/chat/completions", CHAT),
        ("/v1/messages", MESSAGES),
    ]
    assert logged[1]["headers"]["x-api-key"] == MASKED
    for _ in range(RECENT + 1):
        await client.post("/v1/responses", json=RESPONSES, headers=openai_headers())
    logged = (await client.get("/_fake/requests")).json()["requests"]
    assert len(logged) == RECENT and {r["path"] for r in logged} == {"/v1/responses"}
    await client.post("/_fake/reset")
    assert (await client.get("/_fake/requests")).json() == {"requests": []}


# -- faults, limits, stats --------------------------------------------------------------------


async def test_429_fault_hits_count_requests_with_retry_after(client: httpx.AsyncClient) -> None:
    await arm(client, key=KEY, mode="429", count=2, retry_after_s=7, retry_after_ms=6500)
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.headers["retry-after-ms"] == "6500"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"] == "7s"
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
    third = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    assert third.status_code == 200
    other = await client.post(
        "/v1/chat/completions", json=CHAT, headers=openai_headers("sk-other-key")
    )
    assert other.status_code == 200


async def test_fault_for_any_key_and_key_specific_precedence(client: httpx.AsyncClient) -> None:
    await arm(client, key="*", mode="503")
    await arm(client, key=KEY, mode="500", count=1)
    assert (
        await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())
    ).status_code == 500
    for key in (KEY, "sk-a", "sk-b"):
        response = await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers(key))
        assert response.status_code == 503
        assert response.json()["type"] == "error"
        assert RFC3339.match(response.headers["anthropic-ratelimit-requests-reset"])
    assert (await client.delete("/_fake/faults")).status_code == 200
    assert (
        await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())
    ).status_code == 200


async def test_anthropic_429_fault_speaks_anthropic(client: httpx.AsyncClient) -> None:
    await arm(client, key=KEY, mode="429", count=1, retry_after_s=3)
    response = await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_fault_header_overrides_for_one_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=CHAT, headers=openai_headers(**{"x-fake-fault": "401"})
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["x-ratelimit-limit-requests"].isdigit()
    assert (
        await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    ).status_code == 200
    bad = await client.post(
        "/v1/chat/completions", json=CHAT, headers=openai_headers(**{"x-fake-fault": "teapot"})
    )
    assert bad.status_code == 400
    rejected = await client.post("/_fake/faults", json={"key": KEY, "mode": "teapot"})
    assert rejected.status_code == 400


async def test_slow_fault_and_latency_wait_before_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(app_module, "asyncio", SimpleNamespace(sleep=record))
    async with make_client(FakeSettings(latency_ms=40)) as client:
        await arm(client, key=KEY, mode="slow", delay_ms=250, count=1)
        assert (
            await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        ).status_code == 200
        assert waits == [0.04, 0.25]
        assert (
            await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        ).status_code == 200
        assert waits == [0.04, 0.25, 0.04]


async def test_cut_fault_drops_the_stream_before_its_end() -> None:
    async with make_client(raise_app_exceptions=False) as client:
        await arm(client, key=KEY, mode="cut", count=1)
        request = {**CHAT, "stream": True}
        response = await client.post("/v1/chat/completions", json=request, headers=openai_headers())
        assert response.text.startswith("data: ")
        assert "[DONE]" not in response.text
        assert '"finish_reason":"stop"' not in response.text
        whole = await client.post("/v1/chat/completions", json=request, headers=openai_headers())
        assert whole.text.endswith("data: [DONE]\n\n")


async def test_hang_fault_holds_requests_in_flight_until_the_client_leaves(
    client: httpx.AsyncClient,
) -> None:
    await arm(client, key=KEY, mode="hang")
    hanging = [
        asyncio.create_task(
            client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        )
        for _ in range(3)
    ]
    for _ in range(10_000):  # yield to the event loop until all three are parked
        if (await stats(client))["in_flight_by_key"].get(MASKED) == 3:
            break
        await asyncio.sleep(0)
    assert (await stats(client))["in_flight_by_key"][MASKED] == 3
    assert not any(task.done() for task in hanging)
    for task in hanging:
        task.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    current = await stats(client)
    assert current["in_flight_by_key"][MASKED] == 0
    assert current["max_in_flight_by_key"][MASKED] == 3
    assert current["requests_by_key"][MASKED] == 3


async def test_400_fault_is_an_invalid_request_in_each_dialect(client: httpx.AsyncClient) -> None:
    await arm(client, key=KEY, mode="400", count=2)
    openai_refusal = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    assert openai_refusal.status_code == 400
    assert openai_refusal.json()["error"]["type"] == "invalid_request_error"
    assert openai_refusal.headers["x-ratelimit-limit-requests"].isdigit()
    anthropic_refusal = await client.post(
        "/v1/messages", json=MESSAGES, headers=anthropic_headers()
    )
    assert anthropic_refusal.status_code == 400
    assert anthropic_refusal.json()["type"] == "error"
    assert anthropic_refusal.json()["error"]["type"] == "invalid_request_error"
    assert (
        await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    ).status_code == 200
    by_header = await client.post(
        "/v1/messages", json=MESSAGES, headers=anthropic_headers(**{"x-fake-fault": "400"})
    )
    assert by_header.status_code == 400
    assert by_header.json()["error"]["type"] == "invalid_request_error"


async def test_hostile_headers_fault_answers_normally_with_unusable_rate_limits(
    client: httpx.AsyncClient,
) -> None:
    await arm(client, key=KEY, mode="hostile_headers", count=2)
    answer = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"].startswith("Hello from fake")
    hostile = {
        "x-ratelimit-remaining-requests": "inf",
        "x-ratelimit-remaining-tokens": "-5",
        "x-ratelimit-reset-requests": "1e309s",
        "retry-after-ms": "nan",
    }
    for name, value in hostile.items():
        assert answer.headers.get_list(name) == [value], name
    assert answer.headers["x-ratelimit-limit-requests"].isdigit()
    streamed = await client.post(
        "/v1/messages", json={**MESSAGES, "stream": True}, headers=anthropic_headers()
    )
    assert streamed.status_code == 200
    assert streamed.headers.get_list("anthropic-ratelimit-requests-remaining") == ["NaN"]
    assert streamed.headers["anthropic-ratelimit-tokens-remaining"] == "-5"
    assert sse_events(streamed.text)[-1][0] == "message_stop"
    healed = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
    assert healed.headers["x-ratelimit-remaining-requests"].isdigit()
    assert "retry-after-ms" not in healed.headers


async def test_long_stream_fault_paces_its_chunks_and_ends_with_usage(
    monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    paced = SimpleNamespace(sleep=record, ensure_future=asyncio.ensure_future)
    monkeypatch.setattr(asgi_module, "asyncio", paced)
    await arm(client, key=KEY, mode="long_stream", count=1, chunks=12, delay_ms=250)
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/chat/completions", json=request, headers=openai_headers())
    chunks = sse_data(response.text)
    assert chunks[-1] == "[DONE]"
    _, *deltas, finish, usage_chunk, _ = chunks
    assert len(deltas) == 12
    text = "".join(c["choices"][0]["delta"]["content"] for c in deltas)
    assert text == "Hello from fake provider (key ...cdef)" + " more" * 6
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["usage"]["completion_tokens"] == 12
    assert waits == [0.25] * (len(chunks) - 1)
    waits.clear()
    usual = sse_data(
        (await client.post("/v1/chat/completions", json=request, headers=openai_headers())).text
    )
    assert len(usual) == 1 + 5 + 1 + 1 + 1
    assert waits == []


async def test_long_stream_fault_by_header_in_each_dialect(client: httpx.AsyncClient) -> None:
    fault = {"x-fake-fault": "long_stream", "x-fake-chunks": "7", "x-fake-delay-ms": "0"}
    messages = await client.post(
        "/v1/messages", json={**MESSAGES, "stream": True}, headers=anthropic_headers(**fault)
    )
    names = [name for name, _ in sse_events(messages.text)]
    assert names.count("content_block_delta") == 7
    assert names[-1] == "message_stop"
    whole = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers(**fault))
    assert whole.json()["usage"]["completion_tokens"] == 7
    refused = await client.post(
        "/_fake/faults", json={"key": KEY, "mode": "long_stream", "chunks": 0}
    )
    assert refused.status_code == 400


async def test_rpm_limit_answers_429_once_the_window_is_full() -> None:
    async with make_client(FakeSettings(rpm_limit=2)) as client:
        remaining = []
        for _ in range(2):
            response = await client.post(
                "/v1/chat/completions", json=CHAT, headers=openai_headers()
            )
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit-requests"] == "2"
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["1", "0"]
        refused = await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (
            await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers("sk-2"))
        ).status_code == 200


async def test_stats_and_last_request_never_show_a_whole_secret(client: httpx.AsyncClient) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await client.post(
        "/v1/chat/completions", json=CHAT, headers=openai_headers(traceparent=traceparent)
    )
    await client.post("/v1/messages", json=MESSAGES, headers=anthropic_headers())
    current = await stats(client)
    assert current["total"] == 2
    assert current["requests_by_key"] == {MASKED: 2}
    last = (await client.get("/_fake/last_request")).json()
    assert last["method"] == "POST" and last["path"] == "/v1/messages"
    assert last["headers"]["x-api-key"] == MASKED
    assert last["headers"]["anthropic-version"] == "2023-06-01"
    assert last["body"] == MESSAGES
    await client.post(
        "/v1/chat/completions", json=CHAT, headers=openai_headers(traceparent=traceparent)
    )
    last = (await client.get("/_fake/last_request")).json()
    assert last["headers"]["traceparent"] == traceparent
    assert last["headers"]["authorization"] == MASKED
    everything = (await client.get("/_fake/stats")).text + (
        await client.get("/_fake/last_request")
    ).text
    assert KEY not in everything


async def test_reset_forgets_stats_faults_and_windows() -> None:
    async with make_client(FakeSettings(rpm_limit=1)) as client:
        await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        await arm(client, key="*", mode="500")
        assert (await client.post("/_fake/reset")).status_code == 200
        assert await stats(client) == {
            "total": 0,
            "requests_by_key": {},
            "in_flight_by_key": {},
            "max_in_flight_by_key": {},
        }
        assert (await client.get("/_fake/last_request")).status_code == 404
        assert (await client.get("/_fake/faults")).json() == {"faults": []}
        assert (
            await client.post("/v1/chat/completions", json=CHAT, headers=openai_headers())
        ).status_code == 200


async def test_read_body_joins_parts_and_stops_at_content_length() -> None:
    messages = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return messages[calls - 1]

    assert await read_body(receive, content_length=7) == b'{"a":1}'
    assert calls == 2
    calls = 0
    assert await read_body(receive) == b'{"a":1}'
    assert calls == 3


def test_go_duration_matches_openai_header_format() -> None:
    assert [go_duration(s) for s in (0.25, 1, 8.64, 59.5, 360, 86.4, 3600)] == [
        "250ms",
        "1s",
        "8.64s",
        "59.5s",
        "6m0s",
        "1m26.4s",
        "1h0m0s",
    ]


def test_settings_travel_through_the_environment() -> None:
    settings = FakeSettings(
        latency_ms=12.5, chunk_delay_ms=3, stream_chunks=9, rpm_limit=10, models=("a", "b")
    )
    assert FakeSettings.from_env(settings.to_env()) == settings
    assert FakeSettings.from_env({}) == FakeSettings()


async def test_many_stream_chunks_pad_the_reply() -> None:
    async with make_client(FakeSettings(stream_chunks=12)) as client:
        request = {**CHAT, "stream": True}
        chunks = sse_data(
            (await client.post("/v1/chat/completions", json=request, headers=openai_headers())).text
        )
        assert len(chunks) == 1 + 12 + 1 + 1


# -- the real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def granian_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake provider under Granian, a real process group of its own, stopped (whole group)
    when the module is done, whatever happened."""
    logs = tmp_path_factory.mktemp("granian-fake")
    with start_fake_provider(logs, args=["--stream-chunks", "4"]) as proc:
        yield proc.url


def test_official_sdks_against_the_granian_server(granian_server: str) -> None:
    import anthropic
    import openai

    oa = openai.OpenAI(api_key=KEY, base_url=f"{granian_server}/v1", max_retries=0)
    completion = oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello from fake provider (key ...cdef)"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    stream = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == completion.choices[0].message.content
    )
    assert (
        chunks[-1].usage is not None
        and chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
    )
    embedding = oa.embeddings.create(model="text-embedding-3-small", input="abc")
    assert len(embedding.data[0].embedding) == 8
    assert [m.id for m in oa.models.list()][:2] == ["gpt-4o", "gpt-4o-mini"]

    httpx.post(
        f"{granian_server}/_fake/faults",
        json={"key": KEY, "mode": "429", "count": 1, "retry_after_s": 2},
    )
    with pytest.raises(openai.RateLimitError) as limited:
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert limited.value.response.headers["retry-after"] == "2"

    answer = oa.responses.create(model="gpt-4o-mini", input="hi")
    assert answer.output_text == "Hello from fake provider (key ...cdef)"
    assert answer.usage is not None and answer.usage.output_tokens == 6
    events = list(oa.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert type(events[-1]).__name__ == "ResponseCompletedEvent"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        answer.output_text
    )
    with oa.responses.stream(model="gpt-4o-mini", input="hi") as response_stream:
        final_response = response_stream.get_final_response()
    assert final_response.output_text == answer.output_text

    an = anthropic.Anthropic(api_key=KEY, base_url=granian_server, max_retries=0)
    message = an.messages.create(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"
    with an.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as message_stream:
        streamed_text = "".join(message_stream.text_stream)
        final = message_stream.get_final_message()
    assert streamed_text == message.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    tool_message = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
    )
    assert tool_message.content[0].type == "tool_use"
    assert tool_message.content[0].input == {"city": "fake", "days": 1}
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
    ) as tool_stream:
        streamed_tool = tool_stream.get_final_message()
    assert streamed_tool.content[0].type == "tool_use"
    assert streamed_tool.content[0].input == {"city": "fake", "days": 1}


def test_cut_and_hang_reach_the_socket(granian_server: str) -> None:
    request = {**CHAT, "stream": True}
    with httpx.Client(base_url=granian_server) as client:
        client.post("/_fake/reset")
        received: list[bytes] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST",
                "/v1/chat/completions",
                json=request,
                headers=openai_headers(**{"x-fake-fault": "cut"}),
            ) as response,
        ):
            received.extend(response.iter_raw())
        assert received[0].startswith(b"data: ")
        assert b"[DONE]" not in b"".join(received)

        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/v1/chat/completions",
                json=CHAT,
                headers=openai_headers(**{"x-fake-fault": "hang"}),
                timeout=0.5,
            )
        deadline = time.monotonic() + 10
        while client.get("/_fake/stats").json()["in_flight_by_key"][MASKED] != 0:
            assert time.monotonic() < deadline, "a hung request outlived its client"
            time.sleep(0.02)
