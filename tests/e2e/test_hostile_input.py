"""Client bodies built to break parsers, through a real Keyway: a 400 in the caller's dialect.

JSON nested 100,000 deep on every routed endpoint, tool-call arguments nested too deeply to
translate for an Anthropic deployment, and a key spelled with a JSON escape, which must not
hide Keyway's own `stream_options` from the upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway

__all__: list[str] = []

HEADERS = {"authorization": "Bearer sk-client-a", "content-type": "application/json"}
OPENAI_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
ANTHROPIC_ROUTES = ["/v1/messages", "/v1/messages/count_tokens"]
DEEP_BODIES = {
    "array": b"[" * 100_000,
    "object": b'{"a":' * 100_000,
    "field": b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}],'
    b'"metadata":' + b"[" * 100_000,
}


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    proc = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-hostile-input"},
    )
    yield proc
    proc.stop()


def post(gateway: Proc, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", content=raw, headers=HEADERS, timeout=30)


def assert_openai_400(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def assert_anthropic_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize("shape", DEEP_BODIES)
@pytest.mark.parametrize("route", OPENAI_ROUTES + ANTHROPIC_ROUTES)
def test_json_nested_100k_deep_is_a_400_in_the_callers_dialect(
    gateway: Proc, fake: FakeControl, route: str, shape: str
) -> None:
    response = post(gateway, route, DEEP_BODIES[shape])
    if route in ANTHROPIC_ROUTES:
        assert_anthropic_400(response)
    else:
        assert_openai_400(response)
    assert fake.stats()["total"] == 0, "nothing reached the upstream"


@pytest.mark.parametrize(
    "arguments", ["[" * 100_000, '{"a":' * 100_000], ids=["array-100k-deep", "object-100k-deep"]
)
def test_tool_arguments_too_deep_to_translate_for_anthropic_are_a_400(
    gateway: Proc, fake: FakeControl, arguments: str
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "model": "claude-haiku",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    }
    error = assert_openai_400(post(gateway, "/v1/chat/completions", msgspec.json.encode(body)))
    assert error["param"] == "messages[1].tool_calls[0].function.arguments"
    assert fake.stats()["total"] == 0


def top_level_pairs(raw: str) -> list[tuple[str, Any]]:
    """The body's top-level keys as an upstream parser meets them, duplicates included."""
    objects: list[list[tuple[str, Any]]] = []

    def keep(items: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(items)
        return dict(items)

    json.loads(raw, object_pairs_hook=keep)
    return objects[-1]


@pytest.mark.parametrize(
    "options", [b'"stream\\u005foptions":null', b'"\\u0073tream_options":{"include_usage":null}']
)
def test_an_escaped_stream_options_key_still_gets_keyways_usage_option_once(
    gateway: Proc, fake: FakeControl, options: bytes
) -> None:
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,%s}'
    response = post(gateway, "/v1/chat/completions", raw % options)
    assert response.status_code == 200, response.text
    frames = [f[len("data: ") :] for f in response.text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [msgspec.json.decode(f) for f in frames[:-1]]
    assert all(c["choices"] for c in chunks), "the usage chunk Keyway asked for stays hidden"
    seen = fake.last_request()
    upstream = top_level_pairs(seen["raw_body"])
    assert [v for k, v in upstream if k == "stream_options"] == [{"include_usage": True}]
    assert [v for k, v in upstream if k == "model"] == ["gpt-4o-mini"]
