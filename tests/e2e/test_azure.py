"""An azure-openai deployment through the SDK: deployment URLs, `api-key` header, `api-version`.

Chat goes to `/openai/deployments/<deployment>/chat/completions?api-version=...`; the Responses
API exists only on Azure's v1 surface, `/openai/v1/responses`, with the deployment as the body's
`model`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.harness import FakeControl, Proc, start_gateway

CONFIG = """
providers:
  azure:
    kind: azure-openai
    base_url: {url}
    api_version: "2024-10-21"
    keys:
      - {{id: az-1, secret: sk-fake-azure-0001}}
models:
  gpt-4o:
    deployments:
      - {{provider: azure, model: my-gpt4o-deployment}}
clients:
  - {{id: team-a, key: sk-client-a}}
"""


@pytest.fixture(scope="module")
def client(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[openai.OpenAI]:
    gw = start_gateway(
        logs,
        CONFIG.format(url=fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-azure"},
    )
    yield openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-a", max_retries=0)
    gw.stop()


def _sent_with_azure_auth(seen: dict[str, Any]) -> bool:
    return "api-key" in seen["headers"] and "authorization" not in seen["headers"]


def test_chat_through_an_azure_deployment(client: openai.OpenAI, fake: FakeControl) -> None:
    chat = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content
    seen = fake.last_request()
    assert seen["path"] == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert _sent_with_azure_auth(seen)
    streamed = list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_responses_through_an_azure_deployment_use_the_v1_path(
    client: openai.OpenAI, fake: FakeControl
) -> None:
    response = client.responses.create(model="gpt-4o", input="hi")
    assert response.output_text.startswith("Hello from fake provider")
    seen = fake.last_request()
    assert seen["path"] == "/openai/v1/responses"
    assert seen["body"]["model"] == "my-gpt4o-deployment"
    assert _sent_with_azure_auth(seen)
    events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.completed"
