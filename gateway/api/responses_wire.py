"""The few fields of a Responses API request Keyway routes on, and the usage of its answer.

`POST /v1/responses` takes `input` as a string or a list of items, `instructions`, tools,
`previous_response_id` and much more; all of it passes through raw. Keyway reads only the alias,
whether the answer streams, and the output cap for the token estimate. The answer's `usage`
counts `input_tokens` (cached tokens included) and `output_tokens` (reasoning included).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.api.openai_wire import MAX_TOKENS_CAP, decode_head
from gateway.api.reply_body import read_reply
from gateway.translate.vocabulary import usage_counts

__all__ = ["ResponsesHead", "ResponsesUsage", "decode_responses_head", "parse_responses_usage"]

MaxOutputTokens = Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS_CAP)]


class ResponsesHead(msgspec.Struct):
    model: str
    stream: bool | None = None
    max_output_tokens: MaxOutputTokens | None = None


class ResponsesUsage(msgspec.Struct):
    """Counts as the upstream sent them, any JSON type: `usage_counts` decides what they are."""

    input_tokens: Any = None
    output_tokens: Any = None

    def counts(self) -> tuple[int, int]:
        """(input, output) tokens to charge; (-1, -1) if a count is missing or malformed."""
        return usage_counts(self.input_tokens, self.output_tokens)


class _Reply(msgspec.Struct):
    usage: ResponsesUsage | None = None


_reply_decoder = msgspec.json.Decoder(_Reply)


def decode_responses_head(body: bytes) -> Any:
    """The routed fields of a Responses request; BadRequest (400) names the field that is wrong."""
    return decode_head(body, ResponsesHead)


def parse_responses_usage(body: bytes) -> tuple[int, int]:
    """(input, output) tokens of a response object; (-1, -1) when it carries no usable usage."""
    reply = read_reply(_reply_decoder, body)
    if reply is None or reply.usage is None:
        return -1, -1
    return reply.usage.counts()
