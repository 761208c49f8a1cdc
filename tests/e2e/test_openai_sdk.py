"""The official `openai` SDK against a running Keyway (Granian process, real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.harness import FakeControl, Proc, make_config, start_gateway


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    config = make_config(
        fake_proc.url,
        extra_clients="  - {id: tiny, key: sk-client-tiny, rpm: 2}\n",
    )
    proc = start_gateway(
        logs, config, redis_url=redis_url, env={"KEYWAY_REDIS_PREFIX": "e2e-openai"}
    )
    yield proc
    proc.stop()


@pytest.fixture()
def client(gateway: Proc) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-a", max_retries=0)


def test_chat_goes_through_one_of_the_upstream_keys(client: OpenAI, fake: FakeControl) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    reply = raw.parse()
    assert raw.headers["x-keyway-key"] in {"k1", "k2", "k3"}
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.total_tokens > 0
    # the upstream saw one of Keyway's keys, never the client's own key
    seen = fake.last_request()
    assert "sk-client-a" not in str(seen["headers"])
    assert sum(fake.requests_by_key().values()) == 1


def test_unknown_fields_pass_through_untouched(client: OpenAI, fake: FakeControl) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"vendor_knob": {"nested": [1, 2, 3]}},
        seed=7,
    )
    body = fake.last_request()["body"]
    assert body["vendor_knob"] == {"nested": [1, 2, 3]}
    assert body["seed"] == 7


def test_alias_is_rewritten_to_the_upstream_model(client: OpenAI, fake: FakeControl) -> None:
    client.chat.completions.create(model="renamed", messages=[{"role": "user", "content": "hi"}])
    assert fake.last_request()["body"]["model"] == "gpt-4o"


def test_stream_arrives_chunk_by_chunk_without_the_injected_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2
    assert text.startswith("Hello")
    assert all(c.choices for c in chunks), "the usage chunk Keyway asked for must stay hidden"


def test_stream_with_include_usage_keeps_the_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_and_models(client: OpenAI) -> None:
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 0
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "text-embedding-3-small", "claude-haiku"} <= ids


def test_models_lists_only_what_the_key_may_use(gateway: Proc) -> None:
    b = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-b", max_retries=0)
    assert {m.id for m in b.models.list()} == {"text-embedding-3-small"}


def test_models_retrieve_gives_one_alias(client: OpenAI) -> None:
    model = client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "keyway")


@pytest.mark.parametrize(
    ("key", "alias"), [("sk-client-a", "gpt-9"), ("sk-client-b", "gpt-4o-mini")]
)
def test_models_retrieve_of_what_the_key_may_not_use_is_not_found(
    gateway: Proc, key: str, alias: str
) -> None:
    """Unknown and not allowed look the same: a key never learns other keys' aliases."""
    other = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        other.models.retrieve(alias)
    assert info.value.code == "model_not_found"
    assert info.value.type == "invalid_request_error"


def test_legacy_completions(client: OpenAI) -> None:
    done = client.completions.create(model="gpt-4o-mini", prompt="Once upon")
    assert done.choices[0].text


def test_bad_client_key_is_authentication_error(gateway: Proc) -> None:
    bad = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 401
    assert "sk-nope" not in str(info.value.body)


def test_model_not_allowed_is_permission_denied(gateway: Proc) -> None:
    b = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-b", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        b.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_malformed_request_is_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages="not a list")  # type: ignore[arg-type]
    assert info.value.body["param"] == "messages"  # type: ignore[index]


def test_client_rate_limit_is_rate_limit_error_with_retry_after(gateway: Proc) -> None:
    tiny = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-tiny", max_retries=0)
    for _ in range(2):
        tiny.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.RateLimitError) as info:
        tiny.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_upstream_5xx_everywhere_is_a_502(client: OpenAI, fake: FakeControl) -> None:
    fake.fault("*", "500", count=None)
    try:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.status_code == 502
    finally:
        fake.clear_faults()


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer sk-client-a"},
        {"authorization": "bearer sk-client-a"},
        {"authorization": "BEARER sk-client-a"},
        {"authorization": "sk-client-a"},
        {"x-api-key": "sk-client-a"},
    ],
)
def test_client_key_header_forms(gateway: Proc, headers: dict[str, str]) -> None:
    r = httpx.get(f"{gateway.url}/v1/models", headers=headers)
    assert r.status_code == 200, r.text


def test_body_above_the_cap_is_413_and_reserves_nothing(gateway: Proc, fake: FakeControl) -> None:
    big = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}],
    }
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=big,
        headers={"authorization": "Bearer sk-client-a"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    assert fake.requests_by_key() == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": 5, "messages": []}', "model"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "messages"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}',
            "max_tokens",
        ),
    ],
)
def test_bad_input_is_a_400_in_openai_shape(gateway: Proc, body: bytes, param: str | None) -> None:
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=body,
        headers={"authorization": "Bearer sk-client-a", "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


def test_wrong_method_is_405_in_openai_shape(gateway: Proc) -> None:
    r = httpx.get(
        f"{gateway.url}/v1/chat/completions", headers={"authorization": "Bearer sk-client-a"}
    )
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_cors_for_allowed_browser_origins_only(logs: Path, fake_proc: Proc, redis_url: str) -> None:
    gw = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_CORS_ORIGINS": "https://app.example.com", "KEYWAY_REDIS_PREFIX": "e2e-cors"},
    )
    try:
        allowed = {"origin": "https://app.example.com"}
        pre = httpx.options(
            f"{gw.url}/v1/chat/completions",
            headers={**allowed, "access-control-request-method": "POST",
                     "access-control-request-headers": "authorization, content-type"},
        )  # fmt: skip
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in pre.headers["access-control-allow-headers"]
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={**allowed, "authorization": "Bearer sk-client-a"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        other = httpx.get(
            f"{gw.url}/v1/models",
            headers={"origin": "https://evil.example", "authorization": "Bearer sk-client-a"},
        )
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    finally:
        gw.stop()
