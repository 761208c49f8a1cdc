"""`"stream": null` and `"stream_options": null` through Keyway, as api.openai.com takes them.

OpenAI reads null as "not given": no stream, no usage chunk. Clients that serialize every field
(null included) send these; Keyway must answer them normally, passed through, re-encoded for a
renamed alias, or translated for an Anthropic deployment, and must still get the usage chunk it
asks for on a stream whose `stream_options` is null.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway

HEADERS = {"authorization": "Bearer sk-client-a", "content-type": "application/json"}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    proc = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-null-stream"},
    )
    yield proc
    proc.stop()


def post_raw(gateway: Proc, path: str, raw: bytes) -> httpx.Response:
    """The exact bytes, nulls included (no SDK drops or rewrites them)."""
    return httpx.post(f"{gateway.url}{path}", content=raw, headers=HEADERS, timeout=30)


def sse_payloads(text: str) -> list[Any]:
    frames = [f[len("data: ") :] for f in text.split("\n\n") if f.startswith("data: ")]
    return [f if f == "[DONE]" else msgspec.json.decode(f) for f in frames]


@pytest.mark.parametrize("alias", ["gpt-4o-mini", "renamed", "claude-haiku"])
def test_chat_with_null_stream_fields_is_a_normal_completion(
    gateway: Proc, fake: FakeControl, alias: str
) -> None:
    """Passed through as is, re-encoded for another upstream name, translated to Anthropic."""
    raw = (
        b'{"model":"%s","messages":[{"role":"user","content":"hi"}],'
        b'"stream":null,"stream_options":null}' % alias.encode()
    )
    response = post_raw(gateway, "/v1/chat/completions", raw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("Hello")
    assert body["usage"]["total_tokens"] > 0
    assert fake.last_request()["body"].get("stream") in (None, False)


def test_legacy_completion_with_null_stream_fields(gateway: Proc, fake: FakeControl) -> None:
    raw = b'{"model":"gpt-4o-mini","prompt":"Once","stream":null,"stream_options":null}'
    response = post_raw(gateway, "/v1/completions", raw)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "text_completion"
    assert fake.last_request()["body"]["stream"] is None


def test_stream_with_null_options_still_asks_upstream_for_usage(
    gateway: Proc, fake: FakeControl
) -> None:
    """Keyway asks for the usage chunk to count tokens; a spliced key next to the client's null
    would be a duplicate, and upstream keeps the last one (the null)."""
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],' \
        b'"stream":true,"stream_options":null}'  # fmt: skip
    response = post_raw(gateway, "/v1/chat/completions", raw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_payloads(response.text)
    assert chunks[-1] == "[DONE]"
    assert all(c["choices"] for c in chunks[:-1]), "the usage chunk Keyway asked for stays hidden"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text.startswith("Hello")
    assert fake.last_request()["body"]["stream_options"] == {"include_usage": True}


def test_stream_with_null_include_usage_hides_the_usage_chunk(
    gateway: Proc, fake: FakeControl
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": None}}  # fmt: skip
    response = post_raw(gateway, "/v1/chat/completions", msgspec.json.encode(body))
    assert response.status_code == 200, response.text
    chunks = sse_payloads(response.text)
    assert chunks[-1] == "[DONE]"
    assert all(c["choices"] for c in chunks[:-1])
    assert fake.last_request()["body"]["stream_options"] == {"include_usage": True}
