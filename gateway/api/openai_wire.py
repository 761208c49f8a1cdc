"""The few fields of OpenAI-dialect bodies that Keyway routes on; the rest passes through raw.

Decoding into these Structs validates what Keyway relies on (model, stream, max_tokens, the
shape of messages) without building Python objects for the rest of the body.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from gateway.api.reply_body import read_reply
from gateway.api.request_body import decode_body, encode_body, needs_reencoding
from gateway.errors import BadRequest
from gateway.translate.vocabulary import usage_counts

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
    """Counts as the upstream sent them, any JSON type: `usage_counts` decides what they are."""

    prompt_tokens: Any = None
    completion_tokens: Any = None

    def counts(self) -> tuple[int, int]:
        """(prompt, completion) tokens to charge; (-1, -1) if a count is missing or malformed."""
        return usage_counts(self.prompt_tokens, self.completion_tokens)


class UsageReply(msgspec.Struct):
    usage: Usage | None = None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (ChatHead, CompletionHead, EmbeddingHead)
}
_usage_decoder = msgspec.json.Decoder(UsageReply)
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
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", code="invalid_json") from None
    if isinstance(head, ChatHead) and not head.messages:
        raise BadRequest("messages must not be empty", param="messages", code="invalid_value")
    if not head.model:
        raise BadRequest("model must not be empty", param="model", code="invalid_value")
    return head


def parse_usage(body: bytes) -> tuple[int, int]:
    """(prompt, completion) tokens of a JSON reply; (-1, -1) when it carries no usable usage.
    A body that is not a JSON object is an UpstreamError (the client gets a 502)."""
    reply = read_reply(_usage_decoder, body)
    if reply is None or reply.usage is None:
        return -1, -1
    return reply.usage.counts()


def splice_include_usage(body: bytes) -> bytes:
    """Ask for the usage chunk; the decoded head has no stream_options (absent or null).

    Spliced into the bytes when that is unambiguous. A body with `"stream_options": null`, a key
    spelled with escapes or a routed key given twice is re-encoded instead: spliced, the key
    could appear twice and upstream parsers keep the last one, the null, so no usage chunk
    would come back.
    """
    if b'"stream_options"' in body or needs_reencoding(body):
        doc = decode_body(body)
        doc["stream_options"] = {"include_usage": True}
        return encode_body(doc)
    start = body.index(b"{")
    return body[: start + 1] + b'"stream_options":{"include_usage":true},' + body[start + 1 :]


def with_model(body: bytes, model: str, *, include_usage: bool) -> bytes:
    """Re-encode `body` with `model` (an alias mapped to a different upstream name, or the same
    name when the bytes need re-encoding); BadRequest if it cannot be."""
    doc = decode_body(body)
    doc["model"] = model
    if include_usage:
        options = doc.get("stream_options")
        doc["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return encode_body(doc)
