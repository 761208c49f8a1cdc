"""Where a request goes on each kind of provider, and how it authenticates there.

Only the headers named here reach a provider: the client's own `Authorization`, `x-api-key`,
cookies and everything else stay behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.config import ProviderConfig

__all__ = ["FORWARDED_CLIENT_HEADERS", "Endpoint", "ProviderAdapter"]

FORWARDED_CLIENT_HEADERS = frozenset(
    {"openai-beta", "anthropic-beta", "anthropic-version", "traceparent", "tracestate"}
)
"""Client headers a provider may need; everything else the client sent is dropped."""


class Endpoint(Enum):
    """An API operation, named by its OpenAI path (or Anthropic's for messages)."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    COUNT_TOKENS = "messages/count_tokens"
    RESPONSES = "responses"


@dataclass(frozen=True, slots=True)
class ProviderAdapter:
    """URL and auth headers for one configured provider."""

    name: str
    kind: str
    base_url: str
    api_version: str | None
    anthropic_version: str
    connect_timeout_s: float
    read_timeout_s: float

    @classmethod
    def from_config(cls, name: str, cfg: ProviderConfig) -> ProviderAdapter:
        return cls(
            name=name,
            kind=cfg.kind,
            base_url=cfg.base_url.rstrip("/"),
            api_version=cfg.api_version,
            anthropic_version=cfg.anthropic_version,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.timeout_s,
        )

    @property
    def speaks_anthropic(self) -> bool:
        return self.kind == "anthropic"

    def supports(self, endpoint: Endpoint) -> bool:
        """Chat, messages and the Responses API work everywhere (translated where needed); the
        rest is native only: completions and embeddings on OpenAI-kind providers, count_tokens
        on Anthropic."""
        if endpoint in (Endpoint.CHAT, Endpoint.MESSAGES, Endpoint.RESPONSES):
            return True
        if self.speaks_anthropic:
            return endpoint is Endpoint.COUNT_TOKENS
        return endpoint is not Endpoint.COUNT_TOKENS

    def url(self, endpoint: Endpoint, model: str) -> str:
        if self.speaks_anthropic:
            base = self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"
            return f"{base}/{endpoint.value}"
        if self.kind == "azure-openai":
            if endpoint is Endpoint.RESPONSES:
                # Azure serves the Responses API only on its OpenAI-compatible v1 surface: no
                # deployment in the path (the body's `model` names it), no api-version needed
                return f"{self.base_url}/openai/v1/responses"
            return (
                f"{self.base_url}/openai/deployments/{model}/{endpoint.value}"
                f"?api-version={self.api_version}"
            )
        return f"{self.base_url}/{endpoint.value}"

    def headers(self, secret: str, client_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Auth for `secret`, plus the allow-listed client headers (already lower-cased)."""
        out = [("content-type", "application/json"), ("accept-encoding", "identity")]
        if self.speaks_anthropic:
            out.append(("x-api-key", secret))
            if not any(name == "anthropic-version" for name, _ in client_headers):
                out.append(("anthropic-version", self.anthropic_version))
        elif self.kind == "azure-openai":
            out.append(("api-key", secret))
        else:
            out.append(("authorization", f"Bearer {secret}"))
        out.extend(client_headers)
        return out
