"""LangChain's `ChatOpenAI` and `ChatAnthropic` through Keyway, each on both kinds of alias.

Each client speaks its own API to Keyway (`ChatOpenAI` chat completions at /v1,
`ChatAnthropic` the Messages API at the root); Keyway translates when the alias's deployment
speaks the other dialect. Covered: invoke, stream, a tool call and its result (`bind_tools`),
and `with_structured_output` by JSON schema and by forced tool call; and, against the checks
the fake makes as the vendors do, a system prompt, an output limit above the model's, and a
schema OpenAI's strict mode refuses.
"""

from __future__ import annotations

from typing import Any, Literal

import anthropic
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from gateway.translate.output_limits import known_max_output_tokens
from tests.clients.upstream import (
    ALIASES,
    ANTHROPIC_ALIAS,
    CLIENT_KEY,
    OPENAI_ALIAS,
    FakeUpstream,
    tool_names,
    tool_results,
    upstream_model,
    upstream_path,
)
from tests.harness import Proc

CLIENTS = ("ChatOpenAI", "ChatAnthropic")
GREETING = "Hello from fake provider (key ..."
"""How the fake's text answers begin (gateway/fake_provider/reply.py)."""


def chat_model(client: str, alias: str, keyway: Proc, **settings: Any) -> BaseChatModel:
    if client == "ChatOpenAI":
        return ChatOpenAI(
            model=alias,
            base_url=f"{keyway.url}/v1",
            api_key=SecretStr(CLIENT_KEY),
            max_retries=0,
            timeout=30,
            **settings,
        )
    return ChatAnthropic(  # type: ignore[call-arg]
        model=alias,
        base_url=keyway.url,
        api_key=SecretStr(CLIENT_KEY),
        max_retries=0,
        timeout=30,
        **settings,
    )


def assert_routed(upstream: FakeUpstream, alias: str, count: int = 1) -> None:
    """Keyway sent ``count`` requests to the alias's deployment, in its dialect: an OpenAI-kind
    deployment gets chat completions whichever API the client spoke."""
    requests = upstream.api_requests()
    assert len(requests) == count
    for request in requests:
        assert request["path"] == upstream_path(alias, "/v1/chat/completions")
        assert request["body"]["model"] == upstream_model(alias)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Place(BaseModel):
    name: str
    population: int


class Forecast(BaseModel):
    """A weather forecast."""

    city: str
    temperature_c: int
    sky: Literal["clear", "cloudy"]
    windy: bool
    warnings: list[str]
    place: Place


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_invoke(client: str, alias: str, keyway: Proc, upstream: FakeUpstream) -> None:
    reply = chat_model(client, alias, keyway).invoke("Say hello")
    assert isinstance(reply, AIMessage)
    assert reply.text.startswith(GREETING)
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    assert_routed(upstream, alias)


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_stream(client: str, alias: str, keyway: Proc, upstream: FakeUpstream) -> None:
    chunks = list(chat_model(client, alias, keyway).stream("Say hello"))
    pieces = [chunk.text for chunk in chunks if chunk.text]
    assert len(pieces) > 1, "the answer arrived in several pieces"
    assert "".join(pieces).startswith(GREETING)
    assert_routed(upstream, alias)
    assert upstream.api_requests()[0]["body"]["stream"] is True


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_bind_tools_calls_the_tool_and_takes_its_result(
    client: str, alias: str, keyway: Proc, upstream: FakeUpstream
) -> None:
    model = chat_model(client, alias, keyway).bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    asked = model.invoke([question])
    assert isinstance(asked, AIMessage)
    (call,) = asked.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "fake"})

    result = get_weather.invoke(call)
    assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"]
    history: list[BaseMessage] = [question, asked, result]
    answered = model.invoke(history)
    assert answered.text.startswith(GREETING)

    assert_routed(upstream, alias, count=2)
    first, second = upstream.api_requests()
    assert tool_names(first["body"]) == ["get_weather"]
    assert tool_results(second["body"]) == ["sunny in fake"]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_with_structured_output_parses_a_pydantic_model(
    client: str, alias: str, method: str, keyway: Proc, upstream: FakeUpstream
) -> None:
    model = chat_model(client, alias, keyway).with_structured_output(Forecast, method=method)
    forecast = model.invoke("Forecast for Paris?")

    assert isinstance(forecast, Forecast)
    # json_schema: the smallest document the schema accepts (gateway/fake_provider/schema_value.py);
    # function_calling: a forced tool call, its arguments made up (gateway/fake_provider/reply.py)
    text = "x" if method == "json_schema" else "fake"
    assert forecast == Forecast(
        city=text,
        temperature_c=1,
        sky="clear",
        windy=True,
        warnings=[text],
        place=Place(name=text, population=1),
    )
    assert_routed(upstream, alias)
    body = upstream.api_requests()[0]["body"]
    if method == "function_calling":
        assert tool_names(body) == ["Forecast"]
    elif alias == ANTHROPIC_ALIAS:
        assert body["output_config"]["format"]["type"] == "json_schema"
    else:
        assert body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_system_prompt_goes_where_the_upstream_dialect_wants_it(
    client: str, alias: str, keyway: Proc, upstream: FakeUpstream
) -> None:
    reply = chat_model(client, alias, keyway).invoke(
        [SystemMessage("Be brief."), HumanMessage("Say hello")]
    )
    assert reply.text.startswith(GREETING)
    assert_routed(upstream, alias)
    body = upstream.api_requests()[0]["body"]
    if alias == ANTHROPIC_ALIAS:  # a "system" turn in messages is a 400 at Anthropic
        assert body["system"] == "Be brief."
        assert [m["role"] for m in body["messages"]] == ["user"]
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_an_output_limit_above_the_models_is_clamped(
    client: str, alias: str, keyway: Proc, upstream: FakeUpstream
) -> None:
    """Clients ask for what their own model allows; the vendor refuses more than its model's."""
    reply = chat_model(client, alias, keyway, max_tokens=64000).invoke("Say hello")
    assert reply.text.startswith(GREETING)
    assert_routed(upstream, alias)
    body = upstream.api_requests()[0]["body"]
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    assert limit == known_max_output_tokens(upstream_model(alias))


class Note(BaseModel):
    city: str
    note: str | None = None


def test_a_schema_strict_mode_refuses_is_a_400_that_says_why(
    keyway: Proc, upstream: FakeUpstream
) -> None:
    """Anthropic takes optional properties; OpenAI's strict mode, which Keyway asks for on the
    way there, wants every property required. Keyway does not loosen the format: the client is
    told why (gateway/translate/structured_output.py)."""
    model = chat_model("ChatAnthropic", OPENAI_ALIAS, keyway)
    with pytest.raises(anthropic.BadRequestError) as refused:
        model.with_structured_output(Note, method="json_schema").invoke("A note on Paris?")
    assert refused.value.status_code == 400
    assert "'required' is required" in str(refused.value) and "Missing 'note'" in str(refused.value)
    assert_routed(upstream, OPENAI_ALIAS)
