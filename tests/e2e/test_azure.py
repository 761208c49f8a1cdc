"""An azure-openai deployment: deployment URL, `api-key` header, `api-version`, through the SDK."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.harness import FakeControl, Proc, start_gateway


def test_openai_sdk_through_an_azure_deployment(
    logs: Path, fake: FakeControl, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    config = f"""
providers:
  azure:
    kind: azure-openai
    base_url: {fake_proc.url}
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
    gw = start_gateway(logs, config, redis_url=redis_url, env=prefix)
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-a", max_retries=0)
        chat = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.choices[0].message.content
        seen = fake.last_request()
        assert seen["path"] == "/openai/deployments/my-gpt4o-deployment/chat/completions"
        assert "api-key" in seen["headers"] and "authorization" not in seen["headers"]
        streamed = list(
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    finally:
        gw.stop()
