"""Both official SDKs against both kinds of deployment: plain, streaming and tool use.

`claude-haiku` is an Anthropic deployment, `gpt-4o-mini` an OpenAI-compatible one (see
tests/harness.py make_config); the fake provider answers tool requests with a tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    proc = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-dialects"},
    )
    yield proc
    proc.stop()


@pytest.fixture()
def claude(gateway: Proc) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-client-a", max_retries=0)


@pytest.fixture()
def oai(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-a", max_retries=0)


@pytest.mark.parametrize("model", ["claude-haiku", "gpt-4o-mini"])
def test_anthropic_sdk_plain(claude: anthropic.Anthropic, model: str, fake: FakeControl) -> None:
    msg = claude.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0
    upstream = fake.last_request()
    if model == "gpt-4o-mini":  # translated: the OpenAI upstream got an OpenAI chat request
        assert upstream["path"].endswith("/chat/completions")
        assert upstream["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert upstream["path"].endswith("/v1/messages")
        assert upstream["body"]["system"] == "Be brief."


@pytest.mark.parametrize("model", ["claude-haiku", "gpt-4o-mini"])
def test_anthropic_sdk_stream(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-haiku", "gpt-4o-mini"])
def test_anthropic_sdk_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    msg = claude.messages.create(
        model=model,
        max_tokens=128,
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    tool = next(b for b in msg.content if b.type == "tool_use")
    assert tool.name == "get_weather" and isinstance(tool.input, dict)
    assert msg.stop_reason == "tool_use"
    # and the tool result goes back through the same route
    follow = claude.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": msg.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
            },
        ],
    )
    assert follow.content


@pytest.mark.parametrize("model", ["claude-haiku", "gpt-4o-mini"])
def test_anthropic_sdk_streamed_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model,
        max_tokens=128,
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "get_weather" and isinstance(tool.input, dict)


def test_openai_sdk_on_an_anthropic_deployment(oai: openai.OpenAI, fake: FakeControl) -> None:
    chat = oai.chat.completions.create(
        model="claude-haiku",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    )
    assert chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    upstream = fake.last_request()
    assert upstream["path"].endswith("/v1/messages")
    assert upstream["body"]["system"] == "Be brief."
    assert "x-api-key" in upstream["headers"] and "authorization" not in upstream["headers"]


def test_openai_sdk_stream_on_an_anthropic_deployment(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="claude-haiku",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tool_calls_on_an_anthropic_deployment(oai: openai.OpenAI) -> None:
    chat = oai.chat.completions.create(
        model="claude-haiku",
        tools=[WEATHER_OPENAI],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    call = chat.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments), dict)  # type: ignore[union-attr]
    assert chat.choices[0].finish_reason == "tool_calls"
    streamed = list(
        oai.chat.completions.create(
            model="claude-haiku",
            tools=[WEATHER_OPENAI],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            stream=True,
        )
    )
    args = "".join(
        tc.function.arguments or ""
        for c in streamed
        if c.choices and c.choices[0].delta.tool_calls
        for tc in c.choices[0].delta.tool_calls
        if tc.function is not None
    )
    assert isinstance(json.loads(args), dict)


def test_anthropic_errors_keep_anthropic_shape(gateway: Proc) -> None:
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(
            model="claude-haiku", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    good = anthropic.Anthropic(base_url=gateway.url, api_key="sk-client-a", max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        good.messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        good.messages.create(
            model="claude-haiku", max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )


def test_count_tokens_on_an_anthropic_deployment(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(
        model="claude-haiku", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert counted.input_tokens > 0


def test_a_cut_anthropic_stream_reaches_an_openai_client_as_an_error(
    oai: openai.OpenAI, fake: FakeControl
) -> None:
    fake.fault("*", "cut", count=1)
    with pytest.raises(openai.APIError):
        list(
            oai.chat.completions.create(
                model="claude-haiku", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
