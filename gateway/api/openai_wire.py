"""The few fields of OpenAI-dialect bodies that Keyway routes on; the rest passes through raw.

Decoding into these Structs validates what Keyway relies on (model, stream, max_tokens, the
shape of messages) without building Python objects for the rest of the body.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from gateway.errors import BadRequest

__all__ = [
    "MAX_TOKENS_CAP",
    "ChatHead",
    "CompletionHead",
    "EmbeddingHead",
    "Usage",
    "UsageReply",
    "decode_head",
    "parse_usage",
    "splice_include_usage",
    "with_model",
]


MAX_TOKENS_CAP = 10_000_000
"""Above any model's output limit; keeps token estimates (and the Lua numbers) integral."""
MaxTokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_CAP)]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatHead(msgspec.Struct):
    model: str
    messages: list[msgspec.Raw]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None


class CompletionHead(msgspec.Struct):
    model: str
    prompt: msgspec.Raw
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None


class EmbeddingHead(msgspec.Struct):
    model: str
    input: msgspec.Raw


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class UsageReply(msgspec.Struct):
    usage: Usage | None = None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (ChatHead, CompletionHead, EmbeddingHead)
}
_usage_decoder = msgspec.json.Decoder(UsageReply)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode_head(body: bytes, kind: type[Any]) -> Any:
    """Validate the routed fields of `body`; BadRequest names the field that is wrong."""
    decoder = _decoders.get(kind)
    if decoder is None:  # a head of another module (the Responses API's)
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        head = decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        missing = _MISSING.search(text)
        param = at.group(1) if at else (missing.group(1) if missing else None)
        raise BadRequest(f"invalid request: {text}", param=param, code="invalid_value") from None
    except msgspec.DecodeError:
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if isinstance(head, ChatHead) and not head.messages:
        raise BadRequest("messages must not be empty", param="messages", code="invalid_value")
    if not head.model:
        raise BadRequest("model must not be empty", param="model", code="invalid_value")
    return head


def parse_usage(body: bytes) -> tuple[int, int]:
    """(prompt, completion) tokens of a JSON reply; (-1, -1) when it carries no usage."""
    try:
        reply = _usage_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return -1, -1
    if reply.usage is None:
        return -1, -1
    return reply.usage.prompt_tokens, reply.usage.completion_tokens


def splice_include_usage(body: bytes) -> bytes:
    """Ask for the usage chunk without re-encoding: the body has no stream_options of its own.

    A body with `"stream_options": null` is re-encoded instead: spliced, the key would appear
    twice and upstream parsers keep the last one, the null, so no usage chunk would come back.
    """
    if b'"stream_options"' in body:
        doc = _any_decoder.decode(body)
        doc["stream_options"] = {"include_usage": True}
        return _encoder.encode(doc)
    start = body.index(b"{")
    return body[: start + 1] + b'"stream_options":{"include_usage":true},' + body[start + 1 :]


def with_model(body: bytes, model: str, *, include_usage: bool) -> bytes:
    """Re-encode `body` with another model name (an alias mapped to a different upstream name)."""
    doc = _any_decoder.decode(body)
    doc["model"] = model
    if include_usage:
        options = doc.get("stream_options")
        doc["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return _encoder.encode(doc)
