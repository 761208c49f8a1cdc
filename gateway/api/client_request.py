"""A client's request as the codecs see it: its bytes, its decoded head and what follows from it.

Each client API has one parser (`PARSERS`, by endpoint) that decodes only the routed fields with
msgspec (escaped keys read as any JSON reader reads them) and decides, from the decoded head and
never from raw bytes, what goes upstream unchanged: the client's bytes, the bytes with
`stream_options.include_usage` spliced in, or a re-encoding when the bytes could read otherwise
upstream (escaped or duplicate keys) or the client sent its own `stream_options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from gateway.api.anthropic_wire import CountTokensHead, MessagesHead, decode_messages_head
from gateway.api.openai_wire import (
    ChatHead,
    CompletionHead,
    EmbeddingHead,
    decode_head,
    splice_include_usage,
    with_model,
)
from gateway.api.request_body import needs_reencoding
from gateway.api.responses_wire import decode_responses_head
from gateway.providers.adapters import Endpoint

__all__ = ["PARSERS", "ClientRequest", "Parser"]


class ClientRequest(msgspec.Struct, frozen=True):
    """What a parser read from the client's body (a Struct: built in C, where a frozen
    dataclass sets each field through `object.__setattr__` at ten times the cost)."""

    endpoint: Endpoint
    body: bytes
    """The client's bytes, as received."""
    head: Any
    """The decoded routed fields (a msgspec Struct of the API's wire module)."""
    alias: str
    stream: bool
    wants_usage: bool
    """The client asked for the usage chunk of a stream (OpenAI's include_usage)."""
    add_usage: bool
    """Keyway asks the upstream for the usage chunk the client did not ask for (and hides it)."""
    max_tokens: int
    """The answer cap the admission estimate holds (the configured default when not given)."""
    passthrough: bytes
    """What goes to an upstream of the client's dialect whose model name is the alias."""


Parser = Callable[[Endpoint, bytes, int], ClientRequest]
"""(endpoint, body, default max tokens) -> the request; raises BadRequest."""


_OPENAI_HEADS: dict[Endpoint, type[Any]] = {
    Endpoint.CHAT: ChatHead,
    Endpoint.COMPLETIONS: CompletionHead,
}


def _openai(endpoint: Endpoint, body: bytes, default_max_tokens: int) -> ClientRequest:
    head = decode_head(body, _OPENAI_HEADS.get(endpoint, EmbeddingHead))
    stream = bool(getattr(head, "stream", False))
    options = getattr(head, "stream_options", None)
    wants_usage = options is not None and bool(options.include_usage)
    add_usage = stream and not wants_usage
    if endpoint is Endpoint.EMBEDDINGS:
        max_tokens = 0
    else:
        given = getattr(head, "max_tokens", None) or getattr(head, "max_completion_tokens", None)
        max_tokens = default_max_tokens if given is None else int(given)
    if needs_reencoding(body) or (add_usage and options is not None):
        passthrough = with_model(body, head.model, include_usage=add_usage)
    elif add_usage:
        passthrough = splice_include_usage(body)
    else:
        passthrough = body
    return ClientRequest(endpoint, body, head, head.model, stream, wants_usage, add_usage,
                         max_tokens, passthrough)  # fmt: skip


def _plain(head: Any, endpoint: Endpoint, body: bytes, max_tokens: int) -> ClientRequest:
    """A request whose stream carries its usage by itself (Anthropic, the Responses API)."""
    passthrough = (
        with_model(body, head.model, include_usage=False) if needs_reencoding(body) else body
    )
    stream = bool(getattr(head, "stream", False))
    return ClientRequest(endpoint, body, head, head.model, stream, False, False, max_tokens,
                         passthrough)  # fmt: skip


def _responses(endpoint: Endpoint, body: bytes, default_max_tokens: int) -> ClientRequest:
    head = decode_responses_head(body)
    given = head.max_output_tokens
    return _plain(head, endpoint, body, default_max_tokens if given is None else int(given))


def _messages(endpoint: Endpoint, body: bytes, default_max_tokens: int) -> ClientRequest:
    head_type = MessagesHead if endpoint is Endpoint.MESSAGES else CountTokensHead
    head = decode_messages_head(body, head_type)
    return _plain(head, endpoint, body, int(getattr(head, "max_tokens", 0) or 0))


PARSERS: dict[Endpoint, Parser] = {
    Endpoint.CHAT: _openai,
    Endpoint.COMPLETIONS: _openai,
    Endpoint.EMBEDDINGS: _openai,
    Endpoint.RESPONSES: _responses,
    Endpoint.MESSAGES: _messages,
    Endpoint.COUNT_TOKENS: _messages,
}
