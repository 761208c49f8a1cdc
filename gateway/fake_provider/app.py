"""The fake upstream LLM provider as a raw ASGI app: OpenAI, Azure OpenAI and Anthropic dialects.

    POST /v1/chat/completions                          OpenAI, ``Authorization: Bearer <key>``
    POST /v1/completions, /v1/embeddings; GET /v1/models
    POST /v1/responses                                 OpenAI Responses API, JSON or typed events
    POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=
    POST /openai/v1/responses                          Azure, ``api-key: <key>`` (or Bearer)
    POST /v1/messages, /v1/messages/count_tokens       Anthropic, ``x-api-key: <key>`` (or Bearer)
    /_fake/*                                           control API (see ``control.py``)

Every API request passes the same pipeline: count it, wait ``latency_ms``, check the key,
apply an injected fault (``x-fake-fault`` header first, then the key's, then ``"*"``'s), refuse
it where the real vendor would (``vendor_checks.py``), admit it into the key's rate-limit
window, then answer or stream. Granian imports
``gateway.fake_provider.app:app_from_env`` (a factory) in each worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.fake_provider.asgi import (
    ASGIApp,
    ConnectionCut,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    wait_for_disconnect,
)
from gateway.fake_provider.control import ControlAPI
from gateway.fake_provider.dialect import ANTHROPIC, OPENAI, Dialect, send_error
from gateway.fake_provider.endpoints import Call, Endpoints
from gateway.fake_provider.faults import ERROR_MODES, FaultBook, fault_from_headers, mask_secret
from gateway.fake_provider.ledger import Ledger, RecordedRequest
from gateway.fake_provider.quota import QuotaBook
from gateway.fake_provider.settings import FakeSettings

__all__ = ["ConnectionCut", "FakeProvider", "app_from_env", "create_app"]

_AZURE_PREFIX = "/openai/deployments/"
_AZURE_V1 = "/openai/v1/"
"""Azure's OpenAI-compatible surface: no deployment in the path, no api-version required."""

Endpoint = Callable[[Call], Awaitable[None]]


class FakeProvider:
    """The ASGI app; its state (faults, stats, windows) lives in this one process."""

    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.faults = FaultBook()
        self.ledger = Ledger()
        self.quota = QuotaBook(settings.rpm_limit, settings.tpm_limit)
        self._control = ControlAPI(self.faults, self.ledger, self.quota)
        self._endpoints = endpoints = Endpoints(settings, self.quota)
        self._latency_s = settings.latency_ms / 1000
        self._routes: dict[str, tuple[str, Dialect, Endpoint]] = {
            "/v1/chat/completions": ("POST", OPENAI, endpoints.chat),
            "/v1/completions": ("POST", OPENAI, endpoints.completion),
            "/v1/embeddings": ("POST", OPENAI, endpoints.embeddings),
            "/v1/responses": ("POST", OPENAI, endpoints.responses),
            "/openai/v1/responses": ("POST", OPENAI, endpoints.responses),
            "/v1/models": ("GET", OPENAI, endpoints.models),
            "/v1/messages": ("POST", ANTHROPIC, endpoints.messages),
            "/v1/messages/count_tokens": ("POST", ANTHROPIC, endpoints.count_tokens),
        }
        self._azure_routes: dict[str, Endpoint] = {
            "chat/completions": endpoints.chat,
            "completions": endpoints.completion,
            "embeddings": endpoints.embeddings,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        route = self._routes.get(path)
        deployment: str | None = None
        if route is None:
            if path.startswith("/_fake/"):
                await self._control(scope, receive, send)
                return
            if path.startswith(_AZURE_PREFIX):
                deployment, _, operation = path[len(_AZURE_PREFIX) :].partition("/")
                endpoint = self._azure_routes.get(operation)
                if endpoint is not None and deployment:
                    route = ("POST", OPENAI, endpoint)
            if route is None:
                await read_body(receive)
                await send_error(send, OPENAI, 404, f"Invalid URL ({scope['method']} {path})")
                return
        await self._serve(scope, receive, send, route, deployment)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: tuple[str, Dialect, Endpoint],
        deployment: str | None,
    ) -> None:
        method, dialect, endpoint = route
        headers: Headers = scope["headers"]
        bearer = x_api_key = api_key = fault_mode = ""
        content_length = -1
        for name, value in headers:
            if name == b"content-length":
                content_length = int(value) if value.isdigit() else -1
            elif name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    bearer = value[7:].decode("latin-1").strip()
            elif name == b"x-api-key":
                x_api_key = value.decode("latin-1").strip()
            elif name == b"api-key":
                api_key = value.decode("latin-1").strip()
            elif name == b"x-fake-fault":
                fault_mode = value.decode("latin-1").strip()
        # Each dialect reads only its own credential header, as upstream does, so a gateway
        # that sends the wrong one gets the 401 it would get in production.
        azure = deployment is not None or scope["path"].startswith(_AZURE_V1)
        if azure:
            key = api_key or bearer
        elif dialect is ANTHROPIC:
            key = x_api_key or bearer
        elif endpoint == self._endpoints.models and x_api_key and not bearer:
            dialect, key = ANTHROPIC, x_api_key
        else:
            key = bearer

        body = await read_body(receive, content_length)
        masked = mask_secret(key)
        request = RecordedRequest(
            scope["method"], scope["path"], scope["query_string"], headers, body
        )
        self.ledger.begin(masked, request)
        try:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            if scope["method"] != method:
                await send_error(send, dialect, 405, f"Method {scope['method']} not allowed here")
                return
            if not key:
                await send_error(send, dialect, 401, _missing_key_message(dialect, azure))
                return
            call = Call(key, body, deployment, dialect, None, send, receive)
            if deployment is not None and b"api-version=" not in scope["query_string"]:
                await self._endpoints.refuse(
                    call, 404, "Resource not found: api-version is required"
                )
                return
            try:
                call.fault = (
                    fault_from_headers(headers, fault_mode) if fault_mode else self.faults.take(key)
                )
            except ValueError as exc:
                await self._endpoints.refuse(call, 400, str(exc))
                return
            if call.fault is not None:
                if call.fault.mode in ERROR_MODES:
                    await self._fail_by_fault(call)
                    return
                if call.fault.mode == "hang":
                    await wait_for_disconnect(receive)
                    return
                if call.fault.mode == "slow":
                    await asyncio.sleep(call.fault.delay_ms / 1000)
            await endpoint(call)
        finally:
            self.ledger.end(masked)

    async def _fail_by_fault(self, call: Call) -> None:
        fault = call.fault
        assert fault is not None
        status = int(fault.mode)
        if status != 429:
            await self._endpoints.refuse(call, status)
            return
        headers = call.dialect.headers(self.quota.exhausted(fault.retry_after_s))
        headers.append((b"retry-after", b"%d" % fault.retry_after_s))
        if fault.retry_after_ms is not None:
            headers.append((b"retry-after-ms", b"%d" % fault.retry_after_ms))
        await send_error(call.send, call.dialect, 429, None, headers)


def _missing_key_message(dialect: Dialect, azure: bool) -> str:
    if dialect is ANTHROPIC:
        return "x-api-key header is required"
    if azure:
        return "Access denied due to missing subscription key. Provide a valid key in the api-key header."
    return (
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(settings: FakeSettings | None = None) -> ASGIApp:
    """A fresh fake provider with its own faults, stats and windows."""
    return FakeProvider(settings or FakeSettings())


def _is_not_a_cut(record: logging.LogRecord) -> bool:
    """Granian logs every exception an app raises; a deliberate cut is not worth a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, ConnectionCut) and "ConnectionCut" not in record.getMessage()


def app_from_env() -> ASGIApp:
    """Granian's factory target: settings from ``KEYWAY_FAKE_*`` environment variables."""
    logging.getLogger("_granian.utils").addFilter(_is_not_a_cut)
    for handler in logging.getLogger("_granian").handlers:
        handler.addFilter(_is_not_a_cut)
    return create_app(FakeSettings.from_env())
