"""The few fields of Anthropic Messages bodies that Keyway routes on; the rest passes through raw."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.api.openai_wire import MAX_TOKENS_CAP
from gateway.errors import BadRequest

__all__ = ["CountTokensHead", "MessagesHead", "decode_messages_head", "parse_anthropic_usage"]


class MessagesHead(msgspec.Struct):
    model: str
    messages: list[msgspec.Raw]
    max_tokens: Annotated[int, msgspec.Meta(le=MAX_TOKENS_CAP)]
    stream: bool | None = None


class CountTokensHead(msgspec.Struct):
    model: str
    messages: list[msgspec.Raw]


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Reply(msgspec.Struct):
    usage: _Usage | None = None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (MessagesHead, CountTokensHead)
}
_reply_decoder = msgspec.json.Decoder(_Reply)


def decode_messages_head(body: bytes, kind: type[Any]) -> Any:
    """Validate the routed fields; BadRequest (rendered in Anthropic's shape) names the field."""
    try:
        head = _decoders[kind].decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}", code="invalid_value") from None
    except msgspec.DecodeError:
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not head.model:
        raise BadRequest("model: must not be empty", param="model")
    if not head.messages:
        raise BadRequest("messages: at least one message is required", param="messages")
    if isinstance(head, MessagesHead) and head.max_tokens < 1:
        raise BadRequest("max_tokens: must be at least 1", param="max_tokens")
    return head


def parse_anthropic_usage(body: bytes) -> tuple[int, int]:
    """(input incl. cache reads and writes, output) tokens of a Messages reply; -1 if absent."""
    try:
        reply = _reply_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return -1, -1
    if reply.usage is None:
        return -1, -1
    u = reply.usage
    total_in = (
        u.input_tokens + (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
    )
    return total_in, u.output_tokens
