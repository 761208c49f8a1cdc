"""The OpenAI-dialect endpoints: chat/completions, completions, embeddings, models.

Served as raw ASGI handlers mounted in the Litestar app: the body is read once, its routed
fields validated, and passed upstream unchanged whenever the upstream model name equals the alias.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import msgspec
from litestar.handlers import asgi

from gateway.api.asgi_io import ClientGone, Receive, Scope, Send, read_body, send_bytes, send_error
from gateway.api.openai_wire import (
    ChatHead,
    CompletionHead,
    EmbeddingHead,
    decode_head,
    parse_usage,
    splice_include_usage,
    with_model,
)
from gateway.api.sse_tap import OpenAIStreamTap
from gateway.clients import Client
from gateway.errors import (
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UpstreamError,
)
from gateway.providers.adapters import FORWARDED_CLIENT_HEADERS, Endpoint
from gateway.providers.transport import TransportError
from gateway.routing.outcome import Outcome
from gateway.routing.router import Job, OpenCall, UpstreamRejection
from gateway.routing.table import Deployment
from gateway.runtime import Gateway

__all__ = ["openai_handlers"]

log = logging.getLogger("keyway.api")
_encoder = msgspec.json.Encoder()
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class RequestHeaders:
    """The request headers Keyway looks at, collected in one pass over the scope."""

    __slots__ = ("api_key", "content_length", "forwarded")

    def __init__(self, scope: Scope) -> None:
        self.api_key: str | None = None
        self.content_length: int | None = None
        self.forwarded: list[tuple[str, str]] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name == "authorization":
                value = raw_value.decode("latin-1").strip()
                scheme, _, rest = value.partition(" ")
                self.api_key = rest.strip() if scheme.lower() == "bearer" and rest else value
            elif name == "x-api-key":
                self.api_key = self.api_key or raw_value.decode("latin-1").strip()
            elif name == "content-length":
                try:
                    self.content_length = int(raw_value)
                except ValueError:
                    self.content_length = None
            elif name in FORWARDED_CLIENT_HEADERS:
                self.forwarded.append((name, raw_value.decode("latin-1")))


def authenticate(gw: Gateway, headers: RequestHeaders) -> Client:
    if not headers.api_key:
        raise Unauthorized(
            "missing client key: send 'Authorization: Bearer <key>' or 'x-api-key'",
            code="missing_api_key",
        )
    client = gw.clients.lookup(headers.api_key)
    if client is None:
        raise Unauthorized("invalid client key", code="invalid_api_key")
    return client


def new_request_id() -> str:
    return os.urandom(12).hex()


class OpenAIEndpoint:
    """One POST endpoint of the OpenAI dialect, bound to the gateway."""

    def __init__(self, gw: Gateway, endpoint: Endpoint, head_type: type[Any]) -> None:
        self.gw = gw
        self.endpoint = endpoint
        self.head_type = head_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        base_headers = [(b"x-request-id", request_id.encode())]
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"use POST for {scope['path']}", code="method_not_allowed")
            headers = RequestHeaders(scope)
            client = authenticate(self.gw, headers)
            body = await read_body(
                receive, self.gw.cfg.server.max_body_bytes, headers.content_length
            )
            job, stream, hide_usage = self._job(request_id, client, headers, body)
            call = await self.gw.router.open(job)
        except ClientGone:
            return
        except UpstreamRejection as rejection:
            await send_bytes(
                send,
                rejection.status,
                rejection.body,
                base_headers,
                rejection.content_type.encode(),
            )
            return
        except GatewayError as err:
            await send_error(send, err, base_headers)
            return
        base_headers.append((b"x-keyway-key", call.key.id.encode()))
        base_headers.append((b"x-keyway-attempts", str(job.attempts).encode()))
        if stream:
            await self._relay_stream(call, send, receive, base_headers, hide_usage)
        else:
            await self._relay_json(call, send, base_headers)

    def _job(
        self, request_id: str, client: Client, headers: RequestHeaders, body: bytes
    ) -> tuple[Job, bool, bool]:
        head = decode_head(body, self.head_type)
        alias = head.model
        chain = self.gw.table.chain(alias)
        if chain is None:
            raise NotFound(
                f"the model '{alias}' does not exist", param="model", code="model_not_found"
            )
        if not client.may_use(alias):
            raise Forbidden(
                f"this key is not allowed to use the model '{alias}'",
                param="model",
                code="model_not_allowed",
            )
        stream = bool(getattr(head, "stream", False))
        options = getattr(head, "stream_options", None)
        add_usage = stream and (options is None or not options.include_usage)
        hide_usage = stream and not (options is not None and options.include_usage)
        max_tokens = getattr(head, "max_tokens", None) or getattr(
            head, "max_completion_tokens", None
        )
        if self.endpoint is Endpoint.EMBEDDINGS:
            max_tokens = 0
        elif max_tokens is None:
            max_tokens = self.gw.cfg.routing.default_max_tokens
        spliced = splice_include_usage(body) if add_usage and options is None else body

        def prepare(deployment: Deployment) -> bytes:
            if deployment.pool.adapter.speaks_anthropic:
                raise UpstreamError(
                    "translation to Anthropic deployments is not available for this endpoint",
                    code="unsupported_deployment",
                )
            if deployment.model == alias and (options is None or not add_usage):
                return spliced
            return with_model(body, deployment.model, include_usage=add_usage)

        job = Job(
            request_id=request_id,
            client=client,
            alias=alias,
            endpoint=self.endpoint,
            chain=chain,
            prepare=prepare,
            est_tokens=len(body) // 4 + max(int(max_tokens), 0),
            client_headers=headers.forwarded,
        )
        return job, stream, hide_usage

    async def _relay_json(
        self, call: OpenCall, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        router = self.gw.router
        try:
            payload = await call.response.read()
        except TransportError:
            router.finish(call, Outcome.SERVER_ERROR, tokens_in=-1, tokens_out=-1)
            await send_error(
                send, UpstreamError("the upstream response was cut", code="upstream_cut"), headers
            )
            return
        finally:
            await call.response.aclose()
        tokens_in, tokens_out = parse_usage(payload)
        router.finish(call, Outcome.OK, tokens_in=tokens_in, tokens_out=tokens_out)
        content_type = call.response.headers.get("content-type", "application/json").encode()
        await send_bytes(send, call.response.status, payload, headers, content_type)

    async def _relay_stream(
        self,
        call: OpenCall,
        send: Send,
        receive: Receive,
        headers: list[tuple[bytes, bytes]],
        hide_usage: bool,
    ) -> None:
        tap = OpenAIStreamTap(hide_usage_chunk=hide_usage)
        outcome = Outcome.OK
        relay = asyncio.ensure_future(self._pump(call, send, tap, headers))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait((relay, watcher), return_when=asyncio.FIRST_COMPLETED)
            if relay in done:
                outcome = relay.result()
            else:
                relay.cancel()
                outcome = Outcome.CANCELLED
                await asyncio.gather(relay, return_exceptions=True)
        finally:
            watcher.cancel()
            await call.response.aclose()
            usage = tap.usage or (-1, -1)
            self.gw.router.finish(call, outcome, tokens_in=usage[0], tokens_out=usage[1])

    async def _pump(
        self, call: OpenCall, send: Send, tap: OpenAIStreamTap, headers: list[tuple[bytes, bytes]]
    ) -> str:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *headers]}
        )
        try:
            async for chunk in call.response.iter_bytes():
                out = tap.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except TransportError:
            pass
        except OSError:
            return Outcome.CANCELLED
        rest = tap.flush()
        if not tap.done:
            err = UpstreamError("the upstream stream ended before completion", code="upstream_cut")
            rest += (
                b"data: "
                + _encoder.encode(
                    {"error": {"message": err.message, "type": err.openai_type, "code": err.code}}
                )
                + b"\n\n"
            )
        try:
            await send({"type": "http.response.body", "body": rest, "more_body": False})
        except OSError:
            return Outcome.CANCELLED
        return Outcome.OK if tap.done else Outcome.SERVER_ERROR


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def openai_handlers(gw: Gateway) -> list[Any]:
    """The Litestar route handlers of the OpenAI dialect, bound to `gw`."""
    chat = OpenAIEndpoint(gw, Endpoint.CHAT, ChatHead)
    completions = OpenAIEndpoint(gw, Endpoint.COMPLETIONS, CompletionHead)
    embeddings = OpenAIEndpoint(gw, Endpoint.EMBEDDINGS, EmbeddingHead)

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
        base = [(b"x-request-id", new_request_id().encode())]
        try:
            client = authenticate(gw, RequestHeaders(scope))
        except GatewayError as err:
            await send_error(send, err, base)
            return
        created = int(time.time())
        data = [
            {"id": alias, "object": "model", "created": created, "owned_by": "keyway"}
            for alias in gw.table.aliases
            if client.may_use(alias)
        ]
        await send_bytes(send, 200, _encoder.encode({"object": "list", "data": data}), base)

    return [chat_completions, legacy_completions, create_embeddings, list_models]
