"""GET /v1/models and /v1/models/{model} in both dialects, driven through the hot-path
dispatcher as `keyway serve` serves them (a stub gateway: three aliases, two client keys)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from gateway.api.hot_paths import HotPathDispatcher
from gateway.api.models_route import anthropic_page, models_handler
from gateway.api.routes import hot_routes
from gateway.errors import BadRequest

ALIASES = ("gpt", "claude", "team/embed")
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@dataclass
class StubClient:
    id: str
    models: tuple[str, ...]

    def may_use(self, alias: str) -> bool:
        return "*" in self.models or alias in self.models


@dataclass
class StubTable:
    aliases: tuple[str, ...] = ALIASES

    def chain(self, alias: str) -> tuple[()] | None:
        return () if alias in self.aliases else None


@dataclass
class StubClients:
    keys: dict[str, StubClient] = field(
        default_factory=lambda: {
            "sk-all": StubClient("all", ("*",)),
            "sk-embed": StubClient("embed", ("team/embed",)),
        }
    )

    def lookup(self, key: str) -> StubClient | None:
        return self.keys.get(key)


@dataclass
class StubGateway:
    table: StubTable = field(default_factory=StubTable)
    clients: StubClients = field(default_factory=StubClients)


class NoLitestar:
    routes: tuple[()] = ()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"{scope['path']} reached Litestar")


def call(
    path: str, key: str = "sk-all", headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], Any]:
    """One request through the dispatcher: status, headers, decoded body."""
    path, _, query = path.partition("?")
    handler = models_handler(StubGateway())  # type: ignore[arg-type]
    app = HotPathDispatcher(NoLitestar(), hot_routes([handler]))
    raw = [(b"authorization", f"Bearer {key}".encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": raw}  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    got = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], got, msgspec.json.decode(body["body"])


# -- the OpenAI dialect -----------------------------------------------------------------------


def test_the_list_names_what_the_key_may_use() -> None:
    status, _, body = call("/v1/models", key="sk-embed")
    assert status == 200
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("team/embed", "model", "keyway")
    ]


@pytest.mark.parametrize("path", ["/v1/models/gpt", "/v1/models/gpt/"])
def test_one_model_is_an_openai_model_object(path: str) -> None:
    status, headers, body = call(path)
    assert status == 200 and "request-id" not in headers
    assert body == {
        "id": "gpt",
        "object": "model",
        "created": body["created"],
        "owned_by": "keyway",
    }


def test_an_alias_with_a_slash_is_one_model() -> None:
    """The SDKs percent-encode a slash in the id; the server decodes it into scope["path"]."""
    assert call("/v1/models/team/embed", key="sk-embed")[2]["id"] == "team/embed"


@pytest.mark.parametrize(("alias", "key"), [("nope", "sk-all"), ("gpt", "sk-embed")])
def test_unknown_or_not_allowed_is_the_same_openai_404(alias: str, key: str) -> None:
    status, _, body = call(f"/v1/models/{alias}", key=key)
    assert status == 404
    assert body == {
        "error": {
            "message": f"the model '{alias}' does not exist or this key may not use it",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }


def test_a_wrong_method_or_key_is_answered_in_openai_shape() -> None:
    status, headers, body = call("/v1/models/gpt", method="DELETE")
    assert (status, headers["allow"], body["error"]["code"]) == (405, "GET", "method_not_allowed")
    status, _, body = call("/v1/models/gpt", key="sk-wrong")
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")


# -- the Anthropic dialect (anthropic-version) ------------------------------------------------


def test_the_anthropic_list_is_a_page() -> None:
    status, headers, body = call("/v1/models", headers=ANTHROPIC)
    assert status == 200 and headers["request-id"] == headers["x-request-id"]
    assert [m["id"] for m in body["data"]] == list(ALIASES)
    assert {m["type"] for m in body["data"]} == {"model"}
    assert all(m["display_name"] == m["id"] for m in body["data"])
    assert body["data"][0]["created_at"].endswith("Z")
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, "gpt", "team/embed")


def test_the_anthropic_list_pages() -> None:
    body = call("/v1/models?limit=2", headers=ANTHROPIC)[2]
    assert ([m["id"] for m in body["data"]], body["has_more"]) == (["gpt", "claude"], True)
    body = call(f"/v1/models?limit=2&after_id={body['last_id']}", headers=ANTHROPIC)[2]
    assert ([m["id"] for m in body["data"]], body["has_more"]) == (["team/embed"], False)


def test_one_model_is_an_anthropic_model_object() -> None:
    status, _, body = call("/v1/models/claude", headers=ANTHROPIC)
    assert status == 200
    assert set(body) == {"type", "id", "display_name", "created_at"}
    assert (body["type"], body["id"]) == ("model", "claude")


def test_anthropic_errors_are_in_anthropic_shape() -> None:
    status, headers, body = call("/v1/models/gpt", key="sk-embed", headers=ANTHROPIC)
    assert (status, "request-id" in headers) == (404, True)
    assert body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "the model 'gpt' does not exist or this key may not use it",
        },
    }
    status, _, body = call("/v1/models?limit=0", headers=ANTHROPIC)
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")
    status, _, body = call("/v1/models", key="sk-wrong", headers=ANTHROPIC)
    assert (status, body["error"]["type"]) == (401, "authentication_error")


# -- the page, alone --------------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("query", "page", "more"),
    [
        ("", IDS, False),
        ("limit=2", ["a", "b"], True),
        ("limit=5", IDS, False),
        ("after_id=b&limit=2", ["c", "d"], True),
        ("after_id=c&limit=2", ["d", "e"], False),
        ("after_id=e", [], False),
        ("before_id=e&limit=2", ["c", "d"], True),
        ("before_id=c&limit=2", ["a", "b"], False),
        ("before_id=a", [], False),
        ("after_id=nope", [], False),
        ("limit=1&limit=3", ["a", "b", "c"], True),
        ("limit=", IDS, False),  # an empty value is no value: the default
    ],
)
def test_anthropic_page(query: str, page: list[str], more: bool) -> None:
    assert anthropic_page(IDS, query.encode()) == (page, more)


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
def test_a_bad_limit_is_a_bad_request(limit: str) -> None:
    with pytest.raises(BadRequest) as caught:
        anthropic_page(IDS, f"limit={limit}".encode())
    assert caught.value.param == "limit"
