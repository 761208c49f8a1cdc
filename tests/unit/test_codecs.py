"""The codec table and the providers' `supports` say the same thing, and every routed path has
a parser: the router never opens a call that no codec can carry."""

from __future__ import annotations

import msgspec
import pytest

from gateway.api.client_request import PARSERS
from gateway.api.codecs import ANTHROPIC, CODECS, OPENAI, codec_for
from gateway.api.routes import ROUTED
from gateway.config import ProviderConfig
from gateway.errors import BadRequest
from gateway.providers.adapters import Endpoint, ProviderAdapter
from gateway.routing.table import Deployment, Pool

KINDS = {"openai": OPENAI, "openai-compatible": OPENAI, "azure-openai": OPENAI,
         "anthropic": ANTHROPIC}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_a_provider_supports_exactly_the_endpoints_it_has_a_codec_for(
    kind: str, endpoint: Endpoint
) -> None:
    adapter = ProviderAdapter.from_config(
        "p", ProviderConfig(kind=kind, base_url="http://127.0.0.1:9", keys=[])
    )
    assert adapter.supports(endpoint) == ((endpoint, KINDS[kind]) in CODECS)


def test_every_routed_path_has_a_parser_and_a_codec() -> None:
    for endpoint in ROUTED.values():
        assert endpoint in PARSERS
        assert any((endpoint, dialect) in CODECS for dialect in (OPENAI, ANTHROPIC))


def _anthropic_deployment(max_output_tokens: int | None = None) -> Deployment:
    adapter = ProviderAdapter.from_config(
        "ant", ProviderConfig(kind="anthropic", base_url="http://127.0.0.1:9", keys=[])
    )
    pool = Pool(provider="ant", adapter=adapter, keys=(), by_id={})
    return Deployment(alias="claude", pool=pool, model="claude-up", strategy="priority",
                      price=None, max_output_tokens=max_output_tokens)  # fmt: skip


def test_the_responses_api_on_anthropic_is_translated_both_ways() -> None:
    body = msgspec.json.encode(
        {"model": "claude", "input": "Hi", "instructions": "Be brief.", "store": True}
    )
    request = PARSERS[Endpoint.RESPONSES](Endpoint.RESPONSES, body, 1024)
    deployment = _anthropic_deployment()
    codec = codec_for(request, deployment)

    operation, upstream = codec.request(request, deployment)
    assert operation is Endpoint.MESSAGES
    assert msgspec.json.decode(upstream)["system"] == "Be brief."

    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
               "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 7, "cache_read_input_tokens": 3, "output_tokens": 2}}  # fmt: skip
    answer, usage = codec.answer(request, deployment, msgspec.json.encode(message))
    response = msgspec.json.decode(answer)
    assert (response["object"], response["instructions"], response["store"]) == (
        "response", "Be brief.", False
    )  # fmt: skip
    assert usage == (10, 2) and response["usage"]["input_tokens"] == 10

    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    assert msgspec.json.decode(codec.error(400, msgspec.json.encode(error))) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }


def test_a_responses_request_anthropic_cannot_honour_is_a_bad_request() -> None:
    body = msgspec.json.encode({"model": "claude", "input": "Hi", "previous_response_id": "r"})
    request = PARSERS[Endpoint.RESPONSES](Endpoint.RESPONSES, body, 1024)
    deployment = _anthropic_deployment()
    with pytest.raises(BadRequest) as caught:
        codec_for(request, deployment).request(request, deployment)
    assert (caught.value.param, caught.value.code) == (
        "previous_response_id", "unsupported_parameter"
    )  # fmt: skip


def test_a_translated_responses_request_is_clamped_to_the_deployments_limit() -> None:
    body = msgspec.json.encode({"model": "claude", "input": "Hi", "max_output_tokens": 5000})
    request = PARSERS[Endpoint.RESPONSES](Endpoint.RESPONSES, body, 1024)
    deployment = _anthropic_deployment(max_output_tokens=1000)
    _, upstream = codec_for(request, deployment).request(request, deployment)
    assert msgspec.json.decode(upstream)["max_tokens"] == 1000


def _openai_deployment(max_output_tokens: int | None = None) -> Deployment:
    adapter = ProviderAdapter.from_config(
        "oai", ProviderConfig(kind="openai", base_url="http://127.0.0.1:9/v1", keys=[])
    )
    pool = Pool(provider="oai", adapter=adapter, keys=(), by_id={})
    return Deployment(alias="gpt", pool=pool, model="gpt-up", strategy="priority",
                      price=None, max_output_tokens=max_output_tokens)  # fmt: skip


CHAT_BYTES = (
    b'{"model": "gpt", "temperature": 1.50, "messages": [{"role": "user", "content": "Hi"}]}'
)


def test_an_alias_of_another_model_name_goes_up_as_the_clients_bytes_with_that_name() -> None:
    request = PARSERS[Endpoint.CHAT](Endpoint.CHAT, CHAT_BYTES, 1024)
    deployment = _openai_deployment(max_output_tokens=4096)
    _, upstream = codec_for(request, deployment).request(request, deployment)
    assert upstream == CHAT_BYTES.replace(b'"gpt"', b'"gpt-up"')


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (b'"max_tokens": 9000, ', {"max_tokens": 4096}),
        (b'"max_output_tokens": 9000, ', {"max_output_tokens": 4096}),  # not chat's, clamped too
    ],
)
def test_an_alias_asking_for_more_than_the_deployment_allows_is_re_encoded_and_clamped(
    extra: bytes, expected: dict[str, int]
) -> None:
    body = CHAT_BYTES.replace(b"{", b"{" + extra, 1)
    request = PARSERS[Endpoint.CHAT](Endpoint.CHAT, body, 1024)
    deployment = _openai_deployment(max_output_tokens=4096)
    _, upstream = codec_for(request, deployment).request(request, deployment)
    doc = msgspec.json.decode(upstream)
    assert doc == {**msgspec.json.decode(body), "model": "gpt-up", **expected}


def test_a_translated_messages_stream_starts_with_the_prompt_estimate() -> None:
    """An OpenAI upstream reports usage only at the end: the Anthropic client's message_start
    says the prompt estimate admission holds (a body's length / 4), not 0."""
    body = msgspec.json.encode({"model": "gpt", "max_tokens": 64, "stream": True,
                                "messages": [{"role": "user", "content": "Hello " * 200}]})  # fmt: skip
    request = PARSERS[Endpoint.MESSAGES](Endpoint.MESSAGES, body, 1024)
    deployment = _openai_deployment()
    shaper = codec_for(request, deployment).stream(request, deployment)
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}  # fmt: skip
    out = shaper.feed(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
    start = msgspec.json.decode(out.split(b"\n")[1].removeprefix(b"data: "))
    assert start["type"] == "message_start"
    assert start["message"]["usage"]["input_tokens"] == len(body) // 4 > 0
