"""Every routed POST endpoint, whatever its dialect: the request's life around routing.

    span + access record -> POST only -> authenticate -> read the capped body
    -> parse (client_request.PARSERS) -> job
    -> async with the request's owner:
           router.open -> the deployment's codec (codecs.CODECS) -> relay JSON or stream
       the owner's exit settles everything
    or the error in the endpoint's dialect.

Headers say which key served it, how many attempts, and degraded mode. Nothing here depends on
a dialect but the error shape and the request-id header names (`RoutedEndpoint.anthropic`).
"""

from __future__ import annotations

import contextlib
import logging
import time

from gateway.api.asgi_io import ClientGone, Receive, Scope, Send, read_body, send_bytes, send_error
from gateway.api.client_request import PARSERS, ClientRequest
from gateway.api.codecs import CODECS, codec_for, dialect_of
from gateway.api.relay import relay_json, relay_stream
from gateway.api.request_context import RequestHeaders, authenticate, new_request_id
from gateway.api.request_report import CLIENT_GONE, method_label, note_job, report_request
from gateway.clients import Client
from gateway.errors import (
    Forbidden,
    GatewayError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    anthropic_error_body,
    openai_error_body,
)
from gateway.providers.adapters import Endpoint
from gateway.routing.router import Job, RequestOwner, UpstreamRejection
from gateway.routing.table import Deployment
from gateway.runtime import Gateway
from gateway.telemetry import tracing
from gateway.telemetry.access_log import AccessRecord

__all__ = ["Headers", "RoutedEndpoint"]

log = logging.getLogger("keyway.api")

Headers = list[tuple[bytes, bytes]]
_DEGRADED = (b"x-keyway-degraded", b"redis-unavailable")
_ANTHROPIC_API = (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS)


class RoutedEndpoint:
    """One POST endpoint of either dialect, bound to the gateway."""

    def __init__(self, gw: Gateway, endpoint: Endpoint, route: str) -> None:
        self.gw = gw
        self.endpoint = endpoint
        self.route = route
        self.parse = PARSERS[endpoint]
        self.anthropic = endpoint in _ANTHROPIC_API
        """Errors in Anthropic's shape (else OpenAI's), and Anthropic's `request-id` header."""
        self._error_body = anthropic_error_body if self.anthropic else openai_error_body

    def _base_headers(self, request_id: bytes) -> Headers:
        if self.anthropic:
            return [(b"request-id", request_id), (b"x-request-id", request_id)]
        return [(b"x-request-id", request_id)]

    def _chain(self, alias: str, client: Client) -> tuple[Deployment, ...]:
        """The deployments of `alias`: 404 when it does not exist, 403 when the key may not use it."""
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
        return chain

    def _job(
        self, request_id: str, client: Client, headers: RequestHeaders, body: bytes
    ) -> tuple[Job, ClientRequest]:
        """The estimate admission holds until settle: ~4 bytes a prompt token, plus the answer cap."""
        request = self.parse(self.endpoint, body, self.gw.cfg.routing.default_max_tokens)

        def prepare(deployment: Deployment) -> tuple[Endpoint, bytes]:
            return codec_for(request, deployment).request(request, deployment)

        job = Job(
            request_id=request_id,
            client=client,
            alias=request.alias,
            endpoint=self.endpoint,
            chain=self._chain(request.alias, client),
            prepare=prepare,
            est_tokens=len(body) // 4 + max(request.max_tokens, 0),
            prompt_tokens=len(body) // 4,
            client_headers=headers.forwarded,
        )
        return job, request

    async def _respond(
        self,
        owner: RequestOwner,
        request: ClientRequest,
        send: Send,
        receive: Receive,
        headers: Headers,
        record: AccessRecord,
        started: float,
    ) -> None:
        deployment = owner.opened_call.deployment
        codec = codec_for(request, deployment)
        if request.stream:
            shaper = codec.stream(request, deployment)
            max_s = self.gw.cfg.routing.max_stream_s
            await relay_stream(owner, send, receive, headers, shaper, record, started, max_s)
            return

        def shape(payload: bytes) -> tuple[bytes, tuple[int, int]]:
            return codec.answer(request, deployment, payload)

        await relay_json(owner, send, headers, shape, self._error_body, record)

    def _rejection_body(self, rejection: UpstreamRejection) -> bytes:
        """An upstream 4xx body, translated when the upstream spoke the other dialect."""
        codec = CODECS[self.endpoint, dialect_of(rejection.deployment)]
        return codec.error(rejection.status, rejection.body)

    # -- the request's life ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = method_label(scope["method"])
        record = AccessRecord(
            request_id=new_request_id(), route=self.route, status=500, latency_ms=0, method=method
        )
        with tracing.server_span(scope["headers"], self.route, method) as span:
            try:
                await self._serve(scope, receive, send, record, started)
            finally:
                report_request(record, span, started, scope["headers"])

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, record: AccessRecord, started: float
    ) -> None:
        base_headers = self._base_headers(record.request_id.encode())
        job: Job | None = None
        try:
            try:
                if record.method != "POST":
                    raise MethodNotAllowed(
                        f"use POST for {scope['path']}", allow="POST", code="method_not_allowed"
                    )
                headers = RequestHeaders(scope)
                client = authenticate(self.gw, headers)
                record.client_id = client.id
                body = await read_body(
                    receive, self.gw.cfg.server.max_body_bytes, headers.content_length
                )
                job, request = self._job(record.request_id, client, headers, body)
                record.model = job.alias
                async with self.gw.router.owner(job) as owner:
                    call = await self.gw.router.open(owner)
                    base_headers.append((b"x-keyway-key", call.key.id.encode()))
                    base_headers.append((b"x-keyway-attempts", str(job.attempts).encode()))
                    if job.degraded or call.lease.local:
                        base_headers.append(_DEGRADED)
                    await self._respond(
                        owner, request, send, receive, base_headers, record, started
                    )
            except ClientGone:
                record.status, record.error = CLIENT_GONE, "client_gone"
                return
            except UpstreamRejection as rejection:  # a 4xx (a 3xx is the key's failure: attempt.py)
                record.status, record.error = rejection.status, "upstream_rejected"
                await send_bytes(
                    send, rejection.status, self._rejection_body(rejection), base_headers
                )
                return
            except GatewayError as err:
                if self.gw.degraded_mode:
                    base_headers.append(_DEGRADED)
                record.status, record.error = err.status, err.code or ""
                await send_error(send, err, base_headers, anthropic=self.anthropic)
                return
            except Exception:
                # a defect of Keyway's: the owner has settled; the client gets a plain 500 in its
                # dialect (when nothing was sent yet), the log gets the traceback
                log.exception("request %s failed", record.request_id)
                record.error = "internal_error"
                if record.status == 500:
                    internal = InternalError("the gateway failed to handle this request")
                    with contextlib.suppress(Exception):
                        await send_error(send, internal, base_headers, anthropic=self.anthropic)
        finally:
            if job is not None:
                note_job(record, job)
