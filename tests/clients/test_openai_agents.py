"""The OpenAI Agents SDK through Keyway: a tool-using agent, in Responses and chat-completions mode.

The agent loop is the SDK's own: the model calls `get_weather`, the SDK runs it and sends the
result back, the model answers. The fake provider calls the first tool while the conversation
ends with the user, and answers in text once it ends with a tool result.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    Tool,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.clients.upstream import (
    ALIASES,
    CLIENT_KEY,
    FakeUpstream,
    tool_names,
    tool_results,
    upstream_model,
    upstream_path,
)
from tests.harness import Proc

MODES = ("responses", "chat_completions")
API_PATH = {"responses": "/v1/responses", "chat_completions": "/v1/chat/completions"}
"""The API each mode speaks to Keyway, and so to an OpenAI-kind deployment."""
GREETING = "Hello from fake provider (key ..."
"""How the fake's text answers begin (gateway/fake_provider/reply.py)."""


@pytest.fixture(scope="module", autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)
    yield


def model_for(mode: str, alias: str, keyway: Proc) -> Model:
    client = AsyncOpenAI(base_url=f"{keyway.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    if mode == "responses":
        return OpenAIResponsesModel(model=alias, openai_client=client)
    return OpenAIChatCompletionsModel(model=alias, openai_client=client)


def weather_tool(calls: list[str]) -> Tool:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        calls.append(city)
        return f"sunny in {city}"

    return get_weather


class Forecast(BaseModel):
    city: str
    temperature_c: int
    sky: Literal["clear", "cloudy"]
    warnings: list[str]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("mode", MODES)
async def test_agent_calls_its_tool_then_answers(
    mode: str, alias: str, streamed: bool, keyway: Proc, upstream: FakeUpstream
) -> None:
    calls: list[str] = []
    agent = Agent(
        name="forecaster",
        instructions="Answer with the weather.",
        tools=[weather_tool(calls)],
        model=model_for(mode, alias, keyway),
    )
    if streamed:
        run = Runner.run_streamed(agent, "What is the weather in Paris?")
        events = [event.type async for event in run.stream_events()]
        assert "raw_response_event" in events
        final_output = run.final_output
    else:
        result = await Runner.run(agent, "What is the weather in Paris?")
        final_output = result.final_output

    assert calls == ["fake"], "the tool ran once, with the arguments the model chose"
    assert isinstance(final_output, str) and final_output.startswith(GREETING)
    # Keyway sent both turns of the loop to the alias's deployment, in its dialect
    asked, answered = upstream.api_requests()
    assert asked["path"] == answered["path"] == upstream_path(alias, API_PATH[mode])
    assert asked["body"]["model"] == upstream_model(alias)
    assert tool_names(asked["body"]) == ["get_weather"]
    assert tool_results(asked["body"]) == []
    assert tool_results(answered["body"]) == ["sunny in fake"]


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("mode", MODES)
async def test_agent_with_an_output_type_returns_it_parsed(
    mode: str, alias: str, keyway: Proc, upstream: FakeUpstream
) -> None:
    calls: list[str] = []
    agent = Agent(
        name="forecaster",
        instructions="Look the weather up, then fill in the forecast.",
        tools=[weather_tool(calls)],
        output_type=Forecast,
        model=model_for(mode, alias, keyway),
    )
    result = await Runner.run(agent, "Forecast for Paris?")

    assert calls == ["fake"]
    # the smallest document the schema accepts (gateway/fake_provider/schema_value.py)
    assert result.final_output == Forecast(city="x", temperature_c=1, sky="clear", warnings=["x"])
    asked, answered = upstream.api_requests()
    assert asked["path"] == answered["path"] == upstream_path(alias, API_PATH[mode])
    assert tool_results(answered["body"]) == ["sunny in fake"]
