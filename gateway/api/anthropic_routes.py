"""The Anthropic-dialect endpoints: POST /v1/messages and /v1/messages/count_tokens.

An alias on an Anthropic deployment is passed through natively; on an OpenAI-kind deployment
the request, the answer, the stream and the errors are translated. Errors always reach the
client in Anthropic's shape `{"type": "error", "error": {"type", "message"}}`. Each request is
one server span, one `keyway_requests_total` sample and one access line (`request_report`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.handlers import asgi

from gateway.api.anthropic_wire import (
    CountTokensHead,
    MessagesHead,
    decode_messages_head,
    parse_anthropic_usage,
)
from gateway.api.asgi_io import Receive, Scope, Send
from gateway.api.endpoint import Headers, RoutedEndpoint
from gateway.api.relay import relay_json, relay_stream
from gateway.api.request_body import decode_body, encode_body, needs_reencoding
from gateway.api.request_context import RequestHeaders
from gateway.api.stream_taps import AnthropicStreamTap, StreamShaper
from gateway.clients import Client
from gateway.errors import (
    UpstreamError,
    anthropic_error_body,
)
from gateway.providers.adapters import Endpoint
from gateway.routing.router import Job, RequestOwner, UpstreamRejection
from gateway.routing.table import Deployment
from gateway.runtime import Gateway
from gateway.telemetry.access_log import AccessRecord
from gateway.translate import (
    OpenAIToAnthropicStream,
    anthropic_to_openai_chat,
    openai_chat_to_anthropic_message,
    openai_error_to_anthropic,
)
from gateway.translate.vocabulary import openai_usage_counts

__all__ = ["anthropic_handlers"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class MessagesEndpoint(RoutedEndpoint):
    """POST /v1/messages (or count_tokens), bound to the gateway."""

    anthropic = True

    def _base_headers(self, request_id: bytes) -> Headers:
        return [(b"request-id", request_id), (b"x-request-id", request_id)]

    def _rejection_body(self, rejection: UpstreamRejection) -> bytes:
        if rejection.deployment.pool.adapter.speaks_anthropic:
            return rejection.body
        return openai_error_to_anthropic(rejection.status, rejection.body)

    def _job(
        self, request_id: str, client: Client, headers: RequestHeaders, body: bytes
    ) -> tuple[Job, Any]:
        head = decode_messages_head(body, self.head_type)
        alias: str = head.model
        endpoint = self.endpoint
        # bytes that may read otherwise upstream (escaped or duplicate keys) are re-encoded
        reencode = needs_reencoding(body)

        def prepare(deployment: Deployment) -> tuple[Endpoint, bytes]:
            if deployment.pool.adapter.speaks_anthropic:
                if deployment.model == alias and not reencode:
                    return endpoint, body
                doc = decode_body(body)
                doc["model"] = deployment.model
                return endpoint, encode_body(doc)
            translated = anthropic_to_openai_chat(decode_body(body), deployment.model)
            return Endpoint.CHAT, encode_body(translated)

        max_tokens = getattr(head, "max_tokens", 0)
        job = self._new_job(request_id, client, headers, alias, prepare, body, max_tokens)
        return job, head

    async def _respond(
        self,
        owner: RequestOwner,
        head: Any,
        send: Send,
        receive: Receive,
        headers: list[tuple[bytes, bytes]],
        record: AccessRecord,
        started: float,
    ) -> None:
        call = owner.opened_call
        native = call.deployment.pool.adapter.speaks_anthropic
        model = call.deployment.model
        if getattr(head, "stream", False):
            shaper: StreamShaper = (
                AnthropicStreamTap() if native else OpenAIToAnthropicStream(model)
            )
            await relay_stream(
                owner, send, receive, headers, shaper, record, started, self.max_stream_s
            )
            return

        def shape(payload: bytes) -> tuple[bytes, tuple[int, int]]:
            if native:
                tokens = parse_anthropic_usage(payload)
                return payload, (tokens if self.endpoint is Endpoint.MESSAGES else (0, 0))
            try:
                chat = _decoder.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                raise UpstreamError(
                    "the upstream sent an unreadable answer", code="bad_upstream_body"
                ) from None
            message = openai_chat_to_anthropic_message(chat, model)
            return _encoder.encode(message), openai_usage_counts(chat.get("usage"))

        await relay_json(owner, send, headers, shape, anthropic_error_body, record)


def anthropic_handlers(gw: Gateway) -> list[Any]:
    """The Litestar route handlers of the Anthropic dialect, bound to `gw`."""
    messages = MessagesEndpoint(gw, Endpoint.MESSAGES, MessagesHead, "/v1/messages")
    count = MessagesEndpoint(
        gw, Endpoint.COUNT_TOKENS, CountTokensHead, "/v1/messages/count_tokens"
    )

    @asgi("/v1/messages", copy_scope=False)
    async def create_message(scope: Scope, receive: Receive, send: Send) -> None:
        await messages(scope, receive, send)

    @asgi("/v1/messages/count_tokens", copy_scope=False)
    async def count_tokens(scope: Scope, receive: Receive, send: Send) -> None:
        await count(scope, receive, send)

    return [create_message, count_tokens]
