"""One codec per (client API, upstream dialect): how a request and its answer cross the gateway.

    client API      upstream speaks OpenAI           upstream speaks Anthropic
    chat            passthrough (+ usage chunk)      chat -> messages, translated both ways
    completions     passthrough (+ usage chunk)      -
    embeddings      passthrough                      -
    responses       passthrough                      responses -> messages, translated both ways
    messages        messages -> chat, translated     passthrough
    count_tokens    -                                passthrough

A codec turns the client's request into the upstream's body (`request`), the upstream's JSON
answer into the client's with its token usage (`answer`), its stream into the client's
(`stream`, a StreamShaper), and an upstream 4xx body into the client's error shape (`error`).
The endpoint picks the codec by the deployment's dialect and holds no dialect branch itself.
`ProviderAdapter.supports` says the same as this table (tests/unit/test_codecs.py holds them
to it): the router skips a deployment that has no codec for the endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gateway.api.anthropic_wire import parse_anthropic_usage
from gateway.api.client_request import ClientRequest
from gateway.api.openai_wire import parse_usage
from gateway.api.reply_body import read_reply
from gateway.api.request_body import decode_body, encode_body, rename_model
from gateway.api.responses_stream import ResponsesStreamTap
from gateway.api.responses_wire import parse_responses_usage
from gateway.api.stream_taps import AnthropicStreamTap, OpenAIStreamTap, StreamShaper
from gateway.errors import unreadable_answer
from gateway.providers.adapters import Endpoint
from gateway.routing.table import Deployment
from gateway.translate import (
    AnthropicToOpenAIStream,
    AnthropicToResponsesStream,
    OpenAIToAnthropicStream,
    anthropic_error_to_openai,
    anthropic_message_to_openai_chat,
    anthropic_message_to_response,
    anthropic_to_openai_chat,
    openai_chat_to_anthropic,
    openai_chat_to_anthropic_message,
    openai_error_to_anthropic,
    response_settings,
    responses_to_anthropic,
)
from gateway.translate.output_limits import clamp_max_tokens, over_limit
from gateway.translate.vocabulary import anthropic_usage_counts, openai_usage_counts

__all__ = ["ANTHROPIC", "CODECS", "OPENAI", "Codec", "codec_for", "dialect_of"]

OPENAI = "openai"
ANTHROPIC = "anthropic"

Usage = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Codec:
    request: Callable[[ClientRequest, Deployment], tuple[Endpoint, bytes]]
    """The upstream operation and body for a deployment."""
    answer: Callable[[ClientRequest, Deployment, bytes], tuple[bytes, Usage]]
    """Upstream JSON -> (client body, (input, output) tokens); raises GatewayError."""
    stream: Callable[[ClientRequest, Deployment], StreamShaper]
    error: Callable[[int, bytes], bytes]
    """An upstream 4xx body -> the client's error body."""


def dialect_of(deployment: Deployment) -> str:
    return ANTHROPIC if deployment.pool.adapter.speaks_anthropic else OPENAI


def codec_for(request: ClientRequest, deployment: Deployment) -> Codec:
    return CODECS[request.endpoint, dialect_of(deployment)]


# -- requests -------------------------------------------------------------------------------


_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


_limit_fields_of: dict[type, tuple[tuple[str, ...], tuple[bytes, ...]]] = {}


def _limit_fields(head_type: type) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """The output limits a head type reads, and the keys of those it does not read."""
    fields = _limit_fields_of.get(head_type)
    if fields is None:
        read = tuple(name for name in _LIMITS if hasattr(head_type, name))
        unread = tuple(f'"{name}"'.encode() for name in _LIMITS if name not in read)
        fields = _limit_fields_of[head_type] = (read, unread)
    return fields


def _passthrough(req: ClientRequest, d: Deployment) -> tuple[Endpoint, bytes]:
    """The client's bytes when they fit the deployment, with its model name spliced in when
    that is unambiguous; else re-encoded with its model name and the output limits clamped to
    its `max_output_tokens`."""
    head, limit = req.head, d.max_output_tokens
    read, unread = _limit_fields(type(head))
    if limit is None or not over_limit(limit, *[getattr(head, name) for name in read]):
        if d.model == req.alias:
            return req.endpoint, req.passthrough
        # a limit the head does not read (`max_output_tokens` in a chat body) is clamped too
        if limit is None or not any(key in req.passthrough for key in unread):
            renamed = rename_model(req.passthrough, req.alias, d.model)
            if renamed is not None:
                return req.endpoint, renamed
    doc = decode_body(req.passthrough)
    doc["model"] = d.model
    clamp_max_tokens(doc, limit)
    return req.endpoint, encode_body(doc)


def _chat_to_messages(req: ClientRequest, d: Deployment) -> tuple[Endpoint, bytes]:
    doc = openai_chat_to_anthropic(decode_body(req.body), d.model)
    clamp_max_tokens(doc, d.max_output_tokens)
    return Endpoint.MESSAGES, encode_body(doc)


def _messages_to_chat(req: ClientRequest, d: Deployment) -> tuple[Endpoint, bytes]:
    doc = anthropic_to_openai_chat(decode_body(req.body), d.model)
    clamp_max_tokens(doc, d.max_output_tokens)
    return Endpoint.CHAT, encode_body(doc)


def _responses_to_messages(req: ClientRequest, d: Deployment) -> tuple[Endpoint, bytes]:
    doc = responses_to_anthropic(decode_body(req.body), d.model)
    clamp_max_tokens(doc, d.max_output_tokens)
    return Endpoint.MESSAGES, encode_body(doc)


# -- answers ----------------------------------------------------------------------------------


def _as_is(
    parse: Callable[[bytes], Usage],
) -> Callable[[ClientRequest, Deployment, bytes], tuple[bytes, Usage]]:
    def answer(_req: ClientRequest, _d: Deployment, payload: bytes) -> tuple[bytes, Usage]:
        return payload, parse(payload)

    return answer


def _count_tokens_answer(
    _req: ClientRequest, _d: Deployment, payload: bytes
) -> tuple[bytes, Usage]:
    """Counting tokens consumes none: nothing to charge (but it must be an answer)."""
    parse_anthropic_usage(payload)
    return payload, (0, 0)


def _json_object(payload: bytes) -> dict[str, object]:
    doc = read_reply(_OBJECT, payload)
    if doc is None:
        raise unreadable_answer(payload)
    return doc


def _message_to_chat(_req: ClientRequest, d: Deployment, payload: bytes) -> tuple[bytes, Usage]:
    message = _json_object(payload)
    chat = anthropic_message_to_openai_chat(message, d.model)
    return encode_body(chat), anthropic_usage_counts(message.get("usage"))


def _chat_to_message(_req: ClientRequest, d: Deployment, payload: bytes) -> tuple[bytes, Usage]:
    chat = _json_object(payload)
    message = openai_chat_to_anthropic_message(chat, d.model)
    return encode_body(message), openai_usage_counts(chat.get("usage"))


def _message_to_response(req: ClientRequest, d: Deployment, payload: bytes) -> tuple[bytes, Usage]:
    message = _json_object(payload)
    settings = response_settings(decode_body(req.body))  # what the response repeats of the request
    response = anthropic_message_to_response(message, d.model, settings)
    return encode_body(response), anthropic_usage_counts(message.get("usage"))


# -- streams ----------------------------------------------------------------------------------


def _openai_tap(req: ClientRequest, _d: Deployment) -> StreamShaper:
    return OpenAIStreamTap(hide_usage_chunk=not req.wants_usage)


def _anthropic_to_chat(req: ClientRequest, d: Deployment) -> StreamShaper:
    return AnthropicToOpenAIStream(d.model, req.wants_usage)


def _anthropic_tap(_req: ClientRequest, _d: Deployment) -> StreamShaper:
    return AnthropicStreamTap()


def _openai_to_messages(req: ClientRequest, d: Deployment) -> StreamShaper:
    # message_start reports the prompt estimate admission holds (the job's prompt_tokens)
    return OpenAIToAnthropicStream(d.model, input_tokens=len(req.body) // 4)


def _responses_tap(_req: ClientRequest, _d: Deployment) -> StreamShaper:
    return ResponsesStreamTap()


def _anthropic_to_responses(req: ClientRequest, d: Deployment) -> StreamShaper:
    return AnthropicToResponsesStream(d.model, response_settings(decode_body(req.body)))


def _no_stream(req: ClientRequest, _d: Deployment) -> StreamShaper:  # pragma: no cover
    raise AssertionError(f"{req.endpoint.value} does not stream")


def _same(_status: int, body: bytes) -> bytes:
    return body


_OBJECT = msgspec.json.Decoder(dict[str, object])

_openai_native = Codec(_passthrough, _as_is(parse_usage), _openai_tap, _same)
CODECS: dict[tuple[Endpoint, str], Codec] = {
    (Endpoint.CHAT, OPENAI): _openai_native,
    (Endpoint.CHAT, ANTHROPIC): Codec(
        _chat_to_messages, _message_to_chat, _anthropic_to_chat, anthropic_error_to_openai
    ),
    (Endpoint.COMPLETIONS, OPENAI): _openai_native,
    (Endpoint.EMBEDDINGS, OPENAI): Codec(_passthrough, _as_is(parse_usage), _no_stream, _same),
    (Endpoint.RESPONSES, OPENAI): Codec(
        _passthrough, _as_is(parse_responses_usage), _responses_tap, _same
    ),
    (Endpoint.RESPONSES, ANTHROPIC): Codec(
        _responses_to_messages,
        _message_to_response,
        _anthropic_to_responses,
        anthropic_error_to_openai,
    ),
    (Endpoint.MESSAGES, ANTHROPIC): Codec(
        _passthrough, _as_is(parse_anthropic_usage), _anthropic_tap, _same
    ),
    (Endpoint.MESSAGES, OPENAI): Codec(
        _messages_to_chat, _chat_to_message, _openai_to_messages, openai_error_to_anthropic
    ),
    (Endpoint.COUNT_TOKENS, ANTHROPIC): Codec(
        _passthrough, _count_tokens_answer, _no_stream, _same
    ),
}
