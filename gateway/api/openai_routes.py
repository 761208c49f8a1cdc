"""The OpenAI-dialect endpoints: chat/completions, completions, embeddings, models.

Served as raw ASGI handlers mounted in the Litestar app. The body is read once, its routed
fields validated, and sent upstream unchanged when the upstream model name equals the alias;
a chat routed to an Anthropic deployment is translated there and back. Each request is one
server span, one `keyway_requests_total` sample and one access line (`request_report`).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send, send_bytes, send_error
from gateway.api.endpoint import RoutedEndpoint
from gateway.api.openai_wire import (
    ChatHead,
    CompletionHead,
    EmbeddingHead,
    decode_head,
    parse_usage,
    splice_include_usage,
    with_model,
)
from gateway.api.relay import relay_json, relay_stream
from gateway.api.request_body import decode_body, encode_body, needs_reencoding
from gateway.api.request_context import RequestHeaders, authenticate, new_request_id
from gateway.api.request_report import report_request
from gateway.api.stream_taps import OpenAIStreamTap, StreamShaper
from gateway.clients import Client
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    openai_error_body,
    unreadable_answer,
)
from gateway.providers.adapters import Endpoint
from gateway.routing.router import Job, RequestOwner, UpstreamRejection
from gateway.routing.table import Deployment
from gateway.runtime import Gateway
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord
from gateway.translate import (
    AnthropicToOpenAIStream,
    anthropic_error_to_openai,
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic,
)
from gateway.translate.vocabulary import anthropic_usage_counts

__all__ = ["openai_handlers"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class OpenAIEndpoint(RoutedEndpoint):
    """One POST endpoint of the OpenAI dialect, bound to the gateway."""

    def _rejection_body(self, rejection: UpstreamRejection) -> bytes:
        if rejection.deployment.pool.adapter.speaks_anthropic:
            return anthropic_error_to_openai(rejection.status, rejection.body)
        return rejection.body

    def _job(
        self, request_id: str, client: Client, headers: RequestHeaders, body: bytes
    ) -> tuple[Job, Any]:
        head = decode_head(body, self.head_type)
        alias: str = head.model
        stream = bool(getattr(head, "stream", False))
        options = getattr(head, "stream_options", None)
        client_wants_usage = options is not None and bool(options.include_usage)
        add_usage = stream and not client_wants_usage
        max_tokens = getattr(head, "max_tokens", None) or getattr(
            head, "max_completion_tokens", None
        )
        if self.endpoint is Endpoint.EMBEDDINGS:
            max_tokens = 0
        elif max_tokens is None:
            max_tokens = self.gw.cfg.routing.default_max_tokens
        # decided on the decoded head, never on the raw bytes: the cheap path is the client's
        # bytes, at most with include_usage spliced in; bytes that may read otherwise upstream
        # (escaped or duplicate keys) and a client's own stream_options are re-encoded
        if needs_reencoding(body) or (add_usage and options is not None):
            passthrough = with_model(body, alias, include_usage=add_usage)
        elif add_usage:
            passthrough = splice_include_usage(body)
        else:
            passthrough = body
        endpoint = self.endpoint

        def prepare(deployment: Deployment) -> tuple[Endpoint, bytes]:
            if deployment.pool.adapter.speaks_anthropic:
                translated = openai_chat_to_anthropic(decode_body(body), deployment.model)
                return Endpoint.MESSAGES, encode_body(translated)
            if deployment.model == alias:
                return endpoint, passthrough
            return endpoint, with_model(body, deployment.model, include_usage=add_usage)

        job = self._new_job(request_id, client, headers, alias, prepare, body, int(max_tokens))
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
        translated = call.deployment.pool.adapter.speaks_anthropic
        if getattr(head, "stream", False):
            options = getattr(head, "stream_options", None)
            wants_usage = options is not None and bool(options.include_usage)
            shaper: StreamShaper = (
                AnthropicToOpenAIStream(call.deployment.model, wants_usage)
                if translated
                else OpenAIStreamTap(hide_usage_chunk=not wants_usage)
            )
            await relay_stream(
                owner, send, receive, headers, shaper, record, started, self.max_stream_s
            )
            return

        def shape(payload: bytes) -> tuple[bytes, tuple[int, int]]:
            if not translated:
                return payload, parse_usage(payload)
            try:
                message = _decoder.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                raise unreadable_answer(payload) from None
            chat = anthropic_message_to_openai_chat(message, call.deployment.model)
            return _encoder.encode(chat), anthropic_usage_counts(message.get("usage"))

        await relay_json(owner, send, headers, shape, openai_error_body, record)


def openai_handlers(gw: Gateway) -> list[Any]:
    """The Litestar route handlers of the OpenAI dialect, bound to `gw`."""
    chat = OpenAIEndpoint(gw, Endpoint.CHAT, ChatHead, "/v1/chat/completions")
    completions = OpenAIEndpoint(gw, Endpoint.COMPLETIONS, CompletionHead, "/v1/completions")
    embeddings = OpenAIEndpoint(gw, Endpoint.EMBEDDINGS, EmbeddingHead, "/v1/embeddings")

    @asgi("/v1/chat/completions", copy_scope=False)
    async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
        await chat(scope, receive, send)

    @asgi("/v1/completions", copy_scope=False)
    async def legacy_completions(scope: Scope, receive: Receive, send: Send) -> None:
        await completions(scope, receive, send)

    @asgi("/v1/embeddings", copy_scope=False)
    async def create_embeddings(scope: Scope, receive: Receive, send: Send) -> None:
        await embeddings(scope, receive, send)

    @asgi("/v1/models", copy_scope=False)
    async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = "/v1/models"
        record = AccessRecord(
            request_id=new_request_id(), route=route, status=500, latency_ms=0, method="GET"
        )
        base = [(b"x-request-id", record.request_id.encode())]
        with tracing.server_span(scope["headers"], route, "GET") as span:
            try:
                try:
                    if scope["method"] != "GET":
                        raise MethodNotAllowed(
                            "use GET for /v1/models", allow="GET", code="method_not_allowed"
                        )
                    client = authenticate(gw, RequestHeaders(scope))
                except GatewayError as err:
                    record.status, record.error = err.status, err.code or ""
                    await send_error(send, err, base)
                    return
                record.client_id = client.id
                created = int(time.time())
                data = [
                    {"id": alias, "object": "model", "created": created, "owned_by": "keyway"}
                    for alias in gw.table.aliases
                    if client.may_use(alias)
                ]
                record.status = 200
                await send_bytes(send, 200, _encoder.encode({"object": "list", "data": data}), base)
            finally:
                report_request(record, span, started, scope["headers"])

    return [chat_completions, legacy_completions, create_embeddings, list_models]
