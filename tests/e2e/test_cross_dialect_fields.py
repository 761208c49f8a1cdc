"""What a client asks for reaches an upstream of the other dialect, or is refused, never dropped.

Claude Code's own request shape on an OpenAI alias (issue 14), structured output and reasoning
effort both ways, and output limits clamped to the deployment's. `reasoner` is an OpenAI
deployment of a reasoning model, `claude-thinker` an Anthropic one of a model that thinks,
`capped` an OpenAI one with `max_output_tokens` in the config.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway

EXTRA_MODELS = """models:
  reasoner:
    deployments:
      - {provider: fake, model: o3}
  claude-thinker:
    deployments:
      - {provider: fake-anthropic, model: claude-sonnet-4-5}
  capped:
    deployments:
      - {provider: fake, model: small-model, max_output_tokens: 100}
"""
# what Claude Code sends as metadata.user_id: a JSON document, longer than OpenAI's 64 characters
CLAUDE_CODE_USER_ID = json.dumps(
    {
        "device_id": "9f2c1e7a4b3d8e6f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef0",
        "account_uuid": "6a1f3c2e-0b9d-4e8a-9f7c-5d4e3b2a1c0f",
        "session_id": "2b7e1516-28ae-d2a6-abf7-158809cf4f3c",
    }
)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    config = make_config(fake_proc.url).replace("models:\n", EXTRA_MODELS, 1)
    proc = start_gateway(
        logs, config, redis_url=redis_url, env={"KEYWAY_REDIS_PREFIX": "e2e-cross-dialect"}
    )
    yield proc
    proc.stop()


@pytest.fixture()
def claude(gateway: Proc) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-client-a", max_retries=0)


@pytest.fixture()
def oai(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-a", max_retries=0)


def claude_code_request(model: str) -> dict[str, Any]:
    """The shape of Claude Code's first request: cached system blocks, a system message within
    the conversation, its JSON user id, 32,000 output tokens and ultrathink's budget."""
    return {
        "model": model,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": "Fix the failing test."},
            {"role": "assistant", "content": "Which test?"},
            {"role": "user", "content": [{"type": "text", "text": "tests/test_a.py"}]},
            {"role": "system", "content": "<system-reminder>Plan mode is off.</system-reminder>"},
        ],
        "metadata": {"user_id": CLAUDE_CODE_USER_ID},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_claude_codes_first_request_on_an_openai_alias(
    claude: anthropic.Anthropic, fake: FakeControl, stream: bool
) -> None:
    request = claude_code_request("gpt-4o-mini")
    if stream:
        with claude.messages.stream(**request) as events:
            message = events.get_final_message()
    else:  # an explicit timeout: the SDK wants 32,000 tokens streamed otherwise
        message = claude.messages.create(**request, timeout=30)
    assert message.content[0].type == "text" and message.content[0].text
    upstream = fake.last_request()["body"]
    assert [m["role"] for m in upstream["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "system",
    ]
    assert upstream["messages"][-1]["content"] == request["messages"][-1]["content"]
    assert len(upstream["user"]) == 64 and upstream["user"].startswith("sha256:")
    assert "reasoning_effort" not in upstream  # gpt-4o-mini does not reason


def test_claude_codes_thinking_reaches_a_reasoning_model_as_effort(
    claude: anthropic.Anthropic, fake: FakeControl
) -> None:
    claude.messages.create(**claude_code_request("reasoner"), timeout=30)
    assert fake.last_request()["body"]["reasoning_effort"] == "high"


def test_structured_output_reaches_an_openai_upstream(
    claude: anthropic.Anthropic, fake: FakeControl
) -> None:
    claude.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        messages=[{"role": "user", "content": "Where is the Eiffel Tower?"}],
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
    )
    assert fake.last_request()["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }


def test_a_json_schema_reaches_an_anthropic_upstream(oai: openai.OpenAI, fake: FakeControl) -> None:
    oai.chat.completions.create(
        model="claude-haiku",
        messages=[{"role": "user", "content": "Where is the Eiffel Tower?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
        },
    )
    upstream = fake.last_request()["body"]
    assert upstream["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_json_mode_on_an_anthropic_alias_is_refused(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="claude-haiku",
            messages=[{"role": "user", "content": "Answer in JSON."}],
            response_format={"type": "json_object"},
        )
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "response_format")


def test_reasoning_effort_reaches_a_thinking_claude(oai: openai.OpenAI, fake: FakeControl) -> None:
    oai.chat.completions.create(
        model="claude-thinker",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        reasoning_effort="medium",
    )
    upstream = fake.last_request()["body"]
    assert upstream["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert upstream["max_tokens"] == 4096 + 8192


@pytest.mark.parametrize(
    ("model", "field", "limit"),
    [
        ("gpt-4o-mini", "max_completion_tokens", 16384),  # translated
        ("claude-haiku", "max_tokens", 8192),  # claude-3-5-haiku-latest, passed through
    ],
)
def test_claude_codes_max_tokens_is_clamped_to_the_deployments_limit(
    claude: anthropic.Anthropic, fake: FakeControl, model: str, field: str, limit: int
) -> None:
    claude.messages.create(
        model=model, max_tokens=32000, messages=[{"role": "user", "content": "Hi"}], timeout=30
    )
    assert fake.last_request()["body"][field] == limit


@pytest.mark.parametrize(
    ("model", "asked", "field", "limit"),
    [
        ("gpt-4o-mini", "max_tokens", "max_tokens", 16384),  # the client's bytes, passed through
        ("capped", "max_completion_tokens", "max_completion_tokens", 100),  # renamed model
        ("claude-haiku", "max_completion_tokens", "max_tokens", 8192),  # translated
    ],
)
def test_openai_max_tokens_is_clamped_to_the_deployments_limit(
    oai: openai.OpenAI, fake: FakeControl, model: str, asked: str, field: str, limit: int
) -> None:
    oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        **{asked: 32000},  # type: ignore[arg-type]
    )
    assert fake.last_request()["body"][field] == limit
