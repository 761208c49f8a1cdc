"""What the clients tier knows of the setup: Keyway's two aliases and the fake provider's log.

Keyway runs tests/harness.py `make_config`: alias `gpt-4o-mini` is deployed on an
OpenAI-compatible provider, alias `claude-haiku` on an Anthropic one, both on the fake
provider. Whatever a client speaks, the request the fake receives shows which dialect Keyway
sent upstream, and to which model.
"""

from __future__ import annotations

from typing import Any

from tests.harness import FakeControl

__all__ = [
    "ALIASES",
    "ANTHROPIC_ALIAS",
    "CLIENT_KEY",
    "OPENAI_ALIAS",
    "FakeUpstream",
    "tool_names",
    "tool_results",
    "upstream_model",
    "upstream_path",
]

OPENAI_ALIAS = "gpt-4o-mini"
"""An alias whose deployment is on an OpenAI-compatible provider."""
ANTHROPIC_ALIAS = "claude-haiku"
"""An alias whose deployment is on an Anthropic provider."""
ALIASES = (OPENAI_ALIAS, ANTHROPIC_ALIAS)
CLIENT_KEY = "sk-client-a"
"""A Keyway client key allowed every alias."""

_UPSTREAM_MODEL = {OPENAI_ALIAS: "gpt-4o-mini", ANTHROPIC_ALIAS: "claude-3-5-haiku-latest"}


def upstream_model(alias: str) -> str:
    """The model the alias's deployment names upstream."""
    return _UPSTREAM_MODEL[alias]


def upstream_path(alias: str, openai_path: str) -> str:
    """The path a request to ``alias`` reaches upstream: an Anthropic deployment is always sent
    the Messages API; an OpenAI one gets ``openai_path`` (the API the client spoke, or chat
    completions for an Anthropic client)."""
    return "/v1/messages" if alias == ANTHROPIC_ALIAS else openai_path


class FakeUpstream(FakeControl):
    """The control API of the clients tier's fake provider, with its log of recent requests."""

    def api_requests(self) -> list[dict[str, Any]]:
        """The API requests that reached the fake since the last reset, oldest first (up to 64)."""
        requests: list[dict[str, Any]] = self._call("GET", "/_fake/requests")["requests"]
        return [r for r in requests if not r["path"].startswith("/_fake/")]


def tool_names(body: dict[str, Any]) -> list[str]:
    """The names of the tools an upstream request offers, in any of the three dialects."""
    return [
        tool.get("name") or tool.get("function", {}).get("name") for tool in body.get("tools") or ()
    ]


def tool_results(body: dict[str, Any]) -> list[str]:
    """The text of the tool results an upstream request carries back to the model: Anthropic
    ``tool_result`` blocks, OpenAI chat ``tool`` messages, Responses ``function_call_output``."""
    results: list[str] = []
    items = body.get("input")
    for item in items if isinstance(items, list) else ():
        if item.get("type") == "function_call_output":
            results.append(_text(item.get("output")))
    for message in body.get("messages") or ():
        if message.get("role") == "tool":
            results.append(_text(message.get("content")))
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "tool_result":
                results.append(_text(block.get("content")))
    return results


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part.get("text")) for part in content if isinstance(part, dict))
    return ""
