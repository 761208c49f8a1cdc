"""POST /v1/responses: the OpenAI Responses API, routed by model alias like chat.

The client's bytes go upstream unchanged when the upstream model name equals the alias (else
re-encoded with the deployment's model), and the answer comes back as received: JSON, or the
typed event stream relayed event by event. Only OpenAI-kind deployments speak it (nothing
translates it to Anthropic's Messages API), so the router skips Anthropic deployments of the
chain, and an alias with none other is a 400 `unsupported_endpoint` before anything is admitted.

Stored responses (`store`, `previous_response_id`) live in the upstream project of the key that
created them; Keyway does not pin a conversation to a key, so a pool serving follow-ups needs
keys of one project (see README).
"""

from __future__ import annotations

from typing import Any

from litestar.handlers import asgi

from gateway.api.asgi_io import Receive, Scope, Send
from gateway.api.endpoint import RoutedEndpoint
from gateway.api.openai_wire import with_model
from gateway.api.relay import relay_json, relay_stream
from gateway.api.request_body import needs_reencoding
from gateway.api.request_context import RequestHeaders
from gateway.api.responses_stream import ResponsesStreamTap
from gateway.api.responses_wire import (
    ResponsesHead,
    decode_responses_head,
    parse_responses_usage,
)
from gateway.clients import Client
from gateway.errors import BadRequest, openai_error_body
from gateway.providers.adapters import Endpoint
from gateway.routing.router import Job, RequestOwner, UpstreamRejection
from gateway.routing.table import Deployment
from gateway.runtime import Gateway
from gateway.telemetry.access_log import AccessRecord
from gateway.translate import anthropic_error_to_openai

__all__ = ["ResponsesEndpoint", "responses_handlers"]

ROUTE = "/v1/responses"


class ResponsesEndpoint(RoutedEndpoint):
    """POST /v1/responses, bound to the gateway; errors in OpenAI's shape."""

    def _chain(self, alias: str, client: Client) -> tuple[Deployment, ...]:
        chain = super()._chain(alias, client)
        if not any(d.pool.adapter.supports(Endpoint.RESPONSES) for d in chain):
            raise BadRequest(
                f"the model '{alias}' cannot serve the Responses API: its deployments are on "
                "Anthropic providers, which do not speak it; use /v1/chat/completions or "
                "/v1/messages for this model",
                param="model",
                code="unsupported_endpoint",
            )
        return chain

    def _rejection_body(self, rejection: UpstreamRejection) -> bytes:
        if rejection.deployment.pool.adapter.speaks_anthropic:  # never routed there; for safety
            return anthropic_error_to_openai(rejection.status, rejection.body)
        return rejection.body

    def _job(
        self, request_id: str, client: Client, headers: RequestHeaders, body: bytes
    ) -> tuple[Job, Any]:
        head: ResponsesHead = decode_responses_head(body)
        alias = head.model
        max_tokens = head.max_output_tokens
        if max_tokens is None:
            max_tokens = self.gw.cfg.routing.default_max_tokens

        # bytes that may read otherwise upstream (escaped or duplicate keys) are re-encoded
        reencode = needs_reencoding(body)

        def prepare(deployment: Deployment) -> tuple[Endpoint, bytes]:
            if deployment.model == alias and not reencode:
                return Endpoint.RESPONSES, body
            return Endpoint.RESPONSES, with_model(body, deployment.model, include_usage=False)

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
        if head.stream:
            tap = ResponsesStreamTap()
            await relay_stream(
                owner, send, receive, headers, tap, record, started, self.max_stream_s
            )
            return

        def shape(payload: bytes) -> tuple[bytes, tuple[int, int]]:
            return payload, parse_responses_usage(payload)

        await relay_json(owner, send, headers, shape, openai_error_body, record)


def responses_handlers(gw: Gateway) -> list[Any]:
    """The Litestar route handler of the Responses API, bound to `gw`."""
    responses = ResponsesEndpoint(gw, Endpoint.RESPONSES, ResponsesHead, ROUTE)

    @asgi(ROUTE, copy_scope=False)
    async def create_response(scope: Scope, receive: Receive, send: Send) -> None:
        await responses(scope, receive, send)

    return [create_response]
