"""Both official SDKs against both kinds of deployment: plain, streaming and tool use.

`claude-haiku` is an Anthropic deployment, `gpt-4o-mini` an OpenAI-compatible one (see
tests/harness.py make_config); the fake provider answers tool requests with a tool call.
"""

from __future__ import annotations

import json
import re
import time
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


def test_openai_sdk_streamed_tool_call_turn_has_no_text(oai: openai.OpenAI) -> None:
    """As OpenAI streams a tool-call turn: the first chunk is {role, content: null, tool_calls};
    a `content: ""` there makes the AI SDK emit an empty text part."""
    streamed = [
        c
        for c in oai.chat.completions.create(
            model="claude-haiku",
            tools=[WEATHER_OPENAI],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            stream=True,
        )
        if c.choices
    ]
    first = streamed[0].choices[0].delta
    assert first.role == "assistant" and first.tool_calls
    assert first.content is None
    assert all(c.choices[0].delta.content is None for c in streamed)


def test_anthropic_sdk_stream_from_openai_reports_the_prompt_at_message_start(
    claude: anthropic.Anthropic,
) -> None:
    """An OpenAI upstream counts tokens only at the end; message_start carries the estimate."""
    events = list(
        claude.messages.create(
            model="gpt-4o-mini",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hello there, how are you today?"}],
            stream=True,
        )
    )
    start, end = events[0], next(e for e in events if e.type == "message_delta")
    assert start.type == "message_start" and start.message.usage.input_tokens > 0
    assert end.usage.input_tokens is not None and end.usage.input_tokens > 0  # the real count


def test_anthropic_sdk_lists_and_retrieves_models(claude: anthropic.Anthropic) -> None:
    ids = [m.id for m in claude.models.list()]
    assert ids == ["gpt-4o-mini", "renamed", "text-embedding-3-small", "claude-haiku"]
    page = claude.models.list(limit=1)
    assert [m.id for m in page.data] == ["gpt-4o-mini"]
    assert (page.has_more, page.first_id, page.last_id) == (True, "gpt-4o-mini", "gpt-4o-mini")
    assert [m.id for m in page.get_next_page().data] == ["renamed"]
    model = claude.models.retrieve("claude-haiku")
    assert (model.type, model.id, model.display_name) == ("model", "claude-haiku", "claude-haiku")
    assert model.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("key", "alias"), [("sk-client-a", "nope"), ("sk-client-b", "claude-haiku")]
)
def test_anthropic_sdk_models_errors_keep_anthropic_shape(
    gateway: Proc, key: str, alias: str
) -> None:
    other = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as info:
        other.models.retrieve(alias)
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": f"the model '{alias}' does not exist or this key may not use it",
        },
    }
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        bad.models.list()
    assert auth.value.body["type"] == "error"  # type: ignore[index]


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


def access_line(gateway: Proc, request_id: str, timeout_s: float = 5.0) -> str:
    """The access line of `request_id` in the gateway's log (written just after the response)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [
            line
            for line in gateway.log_tail(400).splitlines()
            if "keyway.access" in line and f"request_id={request_id}" in line
        ]
        if lines or time.monotonic() > deadline:
            assert lines, gateway.log_tail(40)
            return lines[-1]
        time.sleep(0.05)


def test_a_cut_stream_is_logged_as_cut_with_the_tokens_charged(
    oai: openai.OpenAI, fake: FakeControl, gateway: Proc
) -> None:
    """Its 200 went out before the cut, so the status stays 200; the line says it was cut and
    what was charged (prompt estimate and streamed text: the usage chunk never came)."""
    fake.fault("*", "cut", count=1)
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi there"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            list(response.parse())
    line = access_line(gateway, request_id)
    assert " POST /v1/chat/completions 200 " in line
    assert line.endswith(" error=upstream_cut"), line
    tokens = re.search(r" tokens=(-?\d+)/(-?\d+) ", line)
    assert tokens is not None, line
    assert int(tokens[1]) > 0 and int(tokens[2]) > 0, line
