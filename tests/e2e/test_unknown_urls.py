"""A path Keyway does not serve answers 404 in the caller's dialect, as the real APIs do.

api.openai.com answers an unknown path with `{"error": {..., "code": "unknown_url"}}` and
api.anthropic.com with `{"type": "error", "error": {"type": "not_found_error", ...}}`; the SDKs
raise their NotFoundError with that body. Keyway's own non-API paths (probes, metrics, docs,
admin) keep their answers, and a wrong method on an API path is a 405 in the dialect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Proc, make_config, start_gateway

CLIENT_KEY = "sk-client-a"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    proc = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-unknown-urls"},
    )
    yield proc
    proc.stop()


@pytest.fixture()
def oai(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture()
def claude(gateway: Proc) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)


def openai_unknown_url(method: str, path: str) -> dict[str, object]:
    message = f"Invalid URL ({method} {path})"
    return {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }


# -- the OpenAI dialect -----------------------------------------------------------------------


def test_batches_api_is_an_openai_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.batches.create(
            completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-abc"
        )
    err = caught.value
    assert err.status_code == 404
    assert err.code == "unknown_url"
    assert err.type == "invalid_request_error"
    assert err.body == openai_unknown_url("POST", "/v1/batches")
    assert err.response.headers["content-type"].startswith("application/json")


def test_stored_responses_by_id_are_not_served(oai: openai.OpenAI) -> None:
    """Only POST /v1/responses is routed: a stored response has no alias to route it by."""
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.retrieve("resp_123")
    assert caught.value.body == openai_unknown_url("GET", "/v1/responses/resp_123")


def test_a_typo_path_through_the_generic_post(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.post("/chat/completion", body=CHAT, cast_to=httpx.Response)
    assert caught.value.body == openai_unknown_url("POST", "/v1/chat/completion")


def test_a_get_of_an_unserved_resource(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.files.list()
    assert caught.value.body == openai_unknown_url("GET", "/v1/files")


def test_a_base_url_without_v1_gets_the_openai_error(gateway: Proc) -> None:
    """The commonest misconfiguration: base_url set to the host alone."""
    client = openai.OpenAI(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.body == openai_unknown_url("POST", "/chat/completions")


def test_a_long_path_is_not_echoed_whole(gateway: Proc) -> None:
    response = httpx.post(f"{gateway.url}/v1/{'x' * 5000}", json={}, timeout=10)
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert message.startswith("Invalid URL (POST /v1/xxx") and message.endswith("...)")
    assert len(message) < 300


# -- the Anthropic dialect --------------------------------------------------------------------


def test_message_batches_are_an_anthropic_not_found(claude: anthropic.Anthropic) -> None:
    request = {"custom_id": "one", "params": {**CHAT, "max_tokens": 16}}
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.batches.create(requests=[request])  # type: ignore[list-item]
    err = caught.value
    assert err.status_code == 404
    assert err.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "Invalid URL (POST /v1/messages/batches)"},
    }


def test_any_messages_subpath_is_anthropic_even_without_the_sdk(gateway: Proc) -> None:
    response = httpx.get(f"{gateway.url}/v1/messages/batches/msgbatch_1", timeout=10)
    assert response.status_code == 404
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "not_found_error"


def test_the_anthropic_sdk_gets_its_shape_on_other_paths_too(claude: anthropic.Anthropic) -> None:
    """The Anthropic SDK always sends anthropic-version; the Files API is not served."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.beta.files.list()
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "Invalid URL (GET /v1/files)"},
    }


# -- wrong methods on the API paths stay 405 in the dialect -----------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/completions"),
        ("GET", "/v1/embeddings"),
        ("GET", "/v1/responses"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models"),
    ],
)
def test_wrong_method_on_an_openai_path_is_405_in_openai_shape(
    gateway: Proc, method: str, path: str
) -> None:
    response = httpx.request(
        method,
        f"{gateway.url}{path}",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=10,
    )
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == ("GET" if path == "/v1/models" else "POST")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_wrong_method_on_an_anthropic_path_is_405_in_anthropic_shape(
    gateway: Proc, path: str
) -> None:
    response = httpx.get(f"{gateway.url}{path}", headers={"x-api-key": CLIENT_KEY}, timeout=10)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


def test_the_sdk_sees_a_wrong_method_as_a_405(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai.get("/chat/completions", cast_to=httpx.Response)
    assert caught.value.status_code == 405
    assert caught.value.code == "method_not_allowed"


# -- Keyway's own paths are untouched ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/docs", "/docs/openapi.json"])
def test_probes_metrics_and_docs_still_answer(gateway: Proc, path: str) -> None:
    assert httpx.get(f"{gateway.url}{path}", timeout=10).status_code == 200


def test_unknown_admin_paths_keep_the_admin_error_shape(gateway: Proc) -> None:
    response = httpx.get(f"{gateway.url}/admin/no-such-thing", timeout=10)
    assert response.status_code == 404
    assert set(response.json()) == {"status_code", "detail"}


def test_a_hot_path_with_a_trailing_slash_is_still_served(gateway: Proc) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions/",
        json=CHAT,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def _unknown_route_count(gateway: Proc) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keyway_requests_total"
        and sample.labels == {"route": "unknown", "status": "404"}
    )


def test_an_unknown_path_is_counted_under_one_bounded_label(gateway: Proc) -> None:
    before = _unknown_route_count(gateway)
    paths = ["/v1/batches", "/v1/no/such/thing", "/v1/messages/batches", "/chat/completions"]
    for path in paths:
        response = httpx.post(f"{gateway.url}{path}", json={}, timeout=10)
        assert response.status_code == 404
        assert len(response.headers["x-request-id"]) == 24
    assert _unknown_route_count(gateway) - before == len(paths)
    # the path itself never becomes a label: a client cannot mint new series
    assert "/v1/no/such/thing" not in httpx.get(f"{gateway.url}/metrics", timeout=10).text
