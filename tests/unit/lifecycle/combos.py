"""The request axes of the fault matrix (endpoint x dialect pairing x stream); what a client sees.

Chat, messages and the Responses API are served by either provider kind (translated across
dialects); completions and embeddings only by OpenAI-kind providers
(gateway/providers/adapters.py `supports`), so they have a same-dialect pairing only. Embeddings
do not stream.

The client-side checks say what a user would notice: an error body in the endpoint's dialect
(never a traceback), a stream that ends cleanly, or one that ends with an error event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "COMBOS",
    "Combo",
    "assert_clean_stream",
    "assert_cut_stream",
    "assert_dialect_error",
    "assert_no_traceback",
]

_PRICES = {"gpt-up": (2, 8), "claude-up": (3, 15), "embed-up": (1, 0)}
"""USD per million tokens (input, output) of conftest.CONFIG: micro-dollars per token."""

_PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}

_PREPARE = {
    ("chat", "openai"): ("gateway.api.codecs", ("decode_body", "rename_model")),
    ("chat", "anthropic"): ("gateway.api.codecs", ("openai_chat_to_anthropic",)),
    ("completions", "openai"): ("gateway.api.codecs", ("decode_body", "rename_model")),
    ("embeddings", "openai"): ("gateway.api.codecs", ("decode_body", "rename_model")),
    ("responses", "openai"): ("gateway.api.codecs", ("decode_body", "rename_model")),
    ("responses", "anthropic"): ("gateway.api.codecs", ("responses_to_anthropic",)),
    ("messages", "anthropic"): ("gateway.api.codecs", ("decode_body", "rename_model")),
    ("messages", "openai"): ("gateway.api.codecs", ("anthropic_to_openai_chat",)),
}
"""What turns the client's body into the upstream's for each pairing (every alias is renamed):
a module and the names it may call that step by (each one it has is replaced)."""

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Combo:
    endpoint: str
    upstream: str
    """The provider kind the alias routes to: openai | anthropic."""
    stream: bool

    @property
    def dialect(self) -> str:
        return "anthropic" if self.endpoint == "messages" else "openai"

    @property
    def id(self) -> str:
        pairing = "same" if self.dialect == self.upstream else "cross"
        return f"{self.endpoint}-{pairing}-{'stream' if self.stream else 'json'}"

    @property
    def path(self) -> str:
        return _PATHS[self.endpoint]

    @property
    def alias(self) -> str:
        if self.upstream == "anthropic":
            return "claude"
        return "embed" if self.endpoint == "embeddings" else "gpt"

    @property
    def provider(self) -> str:
        return "ant" if self.upstream == "anthropic" else "oai"

    @property
    def price(self) -> tuple[int, int]:
        model = {"claude": "claude-up", "embed": "embed-up"}.get(self.alias, "gpt-up")
        return _PRICES[model]

    @property
    def prepare_target(self) -> tuple[str, tuple[str, ...]]:
        return _PREPARE[(self.endpoint, self.upstream)]

    def cost(self, tokens_in: int, tokens_out: int) -> int:
        """Micro-dollars, as the deployment's price makes them."""
        price_in, price_out = self.price
        return tokens_in * price_in + tokens_out * price_out

    def body(self, max_tokens: int = 64, prompt: str = "Say hello to the world") -> bytes:
        """The request; `prompt` reaches the upstream verbatim (translated or not), so a tag in
        it tells a scripted upstream whose request it is answering."""
        say: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        doc: dict[str, Any] = {"model": self.alias}
        if self.endpoint in ("chat", "messages"):
            doc.update(messages=say, max_tokens=max_tokens)
        elif self.endpoint == "completions":
            doc.update(prompt=prompt, max_tokens=max_tokens)
        elif self.endpoint == "embeddings":
            doc.update(input=prompt)
        else:
            doc.update(input=prompt, max_output_tokens=max_tokens)
        if self.stream:
            doc["stream"] = True
        return msgspec.json.encode(doc)


COMBOS = (
    *(Combo("chat", up, s) for up in ("openai", "anthropic") for s in (False, True)),
    *(Combo("completions", "openai", s) for s in (False, True)),
    Combo("embeddings", "openai", False),
    *(Combo("responses", up, s) for up in ("openai", "anthropic") for s in (False, True)),
    *(Combo("messages", up, s) for up in ("anthropic", "openai") for s in (False, True)),
)

_CLEAN_END = {
    "chat": b"data: [DONE]",
    "completions": b"data: [DONE]",
    "responses": b"event: response.completed",
    "messages": b"event: message_stop",
}
_ERROR_EVENT = {
    "chat": b'data: {"error"',
    "completions": b'data: {"error"',
    "responses": b"event: error",
    "messages": b"event: error",
}


def assert_no_traceback(body: bytes) -> None:
    assert b"Traceback" not in body and b'File "' not in body, (
        f"a traceback reached the client: {body[:400]!r}"
    )


def assert_dialect_error(combo: Combo, status: int, body: bytes) -> None:
    """An error status with a body in the endpoint's dialect."""
    assert_no_traceback(body)
    assert status >= 400, f"expected an error, got {status}: {body[:300]!r}"
    try:
        doc = _decoder.decode(body)
    except msgspec.DecodeError:
        raise AssertionError(f"{status} with a body that is not JSON: {body[:300]!r}") from None
    error = doc.get("error") if isinstance(doc, dict) else None
    shaped = (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
        and (combo.dialect != "anthropic" or doc.get("type") == "error")
    )
    assert shaped, f"{status} is not a {combo.dialect} error body: {body[:300]!r}"


def assert_clean_stream(combo: Combo, body: bytes) -> None:
    assert_no_traceback(body)
    assert _CLEAN_END[combo.endpoint] in body, f"the stream did not end cleanly: {body[-300:]!r}"
    assert _ERROR_EVENT[combo.endpoint] not in body, f"an error event in a success: {body[-300:]!r}"


def assert_cut_stream(combo: Combo, body: bytes) -> None:
    """A stream that failed must end with an error event, never pass for a complete answer."""
    assert_no_traceback(body)
    assert _ERROR_EVENT[combo.endpoint] in body, f"no error event in a cut stream: {body[-300:]!r}"
    assert _CLEAN_END[combo.endpoint] not in body, f"a cut stream ended cleanly: {body[-300:]!r}"
