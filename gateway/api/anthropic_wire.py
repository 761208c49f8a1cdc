"""The few fields of Anthropic Messages bodies that Keyway routes on; the rest passes through raw."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.api.openai_wire import MAX_TOKENS_CAP
from gateway.api.reply_body import read_reply
from gateway.errors import BadRequest
from gateway.translate.vocabulary import usage_counts

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
    """Counts as the upstream sent them, any JSON type: `usage_counts` decides what they are."""

    input_tokens: Any = None
    output_tokens: Any = None
    cache_creation_input_tokens: Any = None
    cache_read_input_tokens: Any = None


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
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", code="invalid_json") from None
    if not head.model:
        raise BadRequest("model: must not be empty", param="model")
    if not head.messages:
        raise BadRequest("messages: at least one message is required", param="messages")
    if isinstance(head, MessagesHead) and head.max_tokens < 1:
        raise BadRequest("max_tokens: must be at least 1", param="max_tokens")
    return head


def parse_anthropic_usage(body: bytes) -> tuple[int, int]:
    """(input incl. cache reads and writes, output) tokens of a Messages reply; (-1, -1) when
    it carries no usable usage."""
    reply = read_reply(_reply_decoder, body)
    if reply is None or reply.usage is None:
        return -1, -1
    u = reply.usage
    return usage_counts(
        u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens
    )
