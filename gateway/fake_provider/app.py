"""The fake upstream LLM provider as a raw ASGI app: OpenAI, Azure OpenAI and Anthropic dialects.

    POST /v1/chat/completions                          OpenAI, ``Authorization: Bearer <key>``
    POST /v1/completions, /v1/embeddings; GET /v1/models
    POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=
                                                       Azure, ``api-key: <key>`` (or Bearer)
    POST /v1/messages, /v1/messages/count_tokens       Anthropic, ``x-api-key: <key>`` (or Bearer)
    /_fake/*                                           control API (see ``control.py``)

Every API request passes the same pipeline: count it, wait ``latency_ms``, check the key,
apply an injected fault (``x-fake-fault`` header first, then the key's, then ``"*"``'s), admit
it into the key's rate-limit window, then answer or stream. Granian imports
``gateway.fake_provider.app:app_from_env`` (a factory) in each worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from gateway.fake_provider import anthropic_wire, openai_wire
from gateway.fake_provider.asgi import (
    JSON_CONTENT_TYPE,
    ASGIApp,
    ConnectionCut,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    send_body,
    send_cut_body,
    send_events,
    wait_for_disconnect,
)
from gateway.fake_provider.control import ControlAPI
from gateway.fake_provider.dialect import ANTHROPIC, OPENAI, Dialect
from gateway.fake_provider.faults import (
    ERROR_MODES,
    Fault,
    FaultBook,
    fault_from_headers,
    mask_secret,
)
from gateway.fake_provider.ledger import Ledger, RecordedRequest
from gateway.fake_provider.quota import QuotaBook
from gateway.fake_provider.reply import Reply, ToolAnswer, new_id, text_reply, tool_answer
from gateway.fake_provider.settings import FakeSettings

__all__ = ["ConnectionCut", "FakeProvider", "app_from_env", "create_app"]

_chat_decoder = msgspec.json.Decoder(openai_wire.ChatRequest)
_completion_decoder = msgspec.json.Decoder(openai_wire.CompletionRequest)
_embedding_decoder = msgspec.json.Decoder(openai_wire.EmbeddingRequest)
_messages_decoder = msgspec.json.Decoder(anthropic_wire.MessagesRequest)
_encoder = msgspec.json.Encoder()

_AZURE_PREFIX = "/openai/deployments/"


@dataclass(slots=True)
class Call:
    """One API request on its way through the pipeline."""

    key: str
    body: bytes
    deployment: str | None
    """The Azure deployment named in the path; it stands for the model."""
    dialect: Dialect
    fault: Fault | None
    send: Send
    receive: Receive


Endpoint = Callable[["Call"], Awaitable[None]]


class FakeProvider:
    """The ASGI app; its state (faults, stats, windows) lives in this one process."""

    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.faults = FaultBook()
        self.ledger = Ledger()
        self.quota = QuotaBook(settings.rpm_limit, settings.tpm_limit)
        self._control = ControlAPI(self.faults, self.ledger, self.quota)
        self._latency_s = settings.latency_ms / 1000
        self._chunk_delay_s = settings.chunk_delay_ms / 1000
        self._openai_models = openai_wire.models_body(settings.models)
        self._anthropic_models = anthropic_wire.models_body(settings.models)
        self._routes: dict[str, tuple[str, Dialect, Endpoint]] = {
            "/v1/chat/completions": ("POST", OPENAI, self._chat),
            "/v1/completions": ("POST", OPENAI, self._completion),
            "/v1/embeddings": ("POST", OPENAI, self._embeddings),
            "/v1/models": ("GET", OPENAI, self._models),
            "/v1/messages": ("POST", ANTHROPIC, self._messages),
            "/v1/messages/count_tokens": ("POST", ANTHROPIC, self._count_tokens),
        }
        self._azure_routes: dict[str, Endpoint] = {
            "chat/completions": self._chat,
            "completions": self._completion,
            "embeddings": self._embeddings,
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
                await _fail(send, OPENAI, 404, f"Invalid URL ({scope['method']} {path})")
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
        for name, value in headers:
            if name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    bearer = value[7:].decode("latin-1").strip()
            elif name == b"x-api-key":
                x_api_key = value.decode("latin-1").strip()
            elif name == b"api-key":
                api_key = value.decode("latin-1").strip()
            elif name == b"x-fake-fault":
                fault_mode = value.decode("latin-1").strip()
        if deployment is not None:
            key = api_key or bearer
        elif dialect is ANTHROPIC:
            key = x_api_key or bearer
        elif endpoint == self._models and x_api_key and not bearer:
            dialect, key = ANTHROPIC, x_api_key
        else:
            key = bearer

        body = await read_body(receive)
        masked = mask_secret(key)
        self.ledger.begin(
            masked,
            RecordedRequest(scope["method"], scope["path"], scope["query_string"], headers, body),
        )
        try:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            if scope["method"] != method:
                await _fail(send, dialect, 405, f"Method {scope['method']} not allowed here")
                return
            if not key:
                await _fail(send, dialect, 401, _missing_key_message(dialect, deployment))
                return
            if deployment is not None and b"api-version=" not in scope["query_string"]:
                await _fail(send, dialect, 404, "Resource not found: api-version is required")
                return
            try:
                fault = (
                    fault_from_headers(headers, fault_mode) if fault_mode else self.faults.take(key)
                )
            except ValueError as exc:
                await _fail(send, dialect, 400, str(exc))
                return
            if fault is not None:
                if fault.mode in ERROR_MODES:
                    await self._fail_by_fault(send, dialect, fault)
                    return
                if fault.mode == "hang":
                    await wait_for_disconnect(receive)
                    return
                if fault.mode == "slow":
                    await asyncio.sleep(fault.delay_ms / 1000)
            await endpoint(Call(key, body, deployment, dialect, fault, send, receive))
        finally:
            self.ledger.end(masked)

    async def _fail_by_fault(self, send: Send, dialect: Dialect, fault: Fault) -> None:
        status = int(fault.mode)
        if status != 429:
            await _fail(send, dialect, status)
            return
        headers = dialect.headers(self.quota.exhausted(fault.retry_after_s))
        headers.append((b"retry-after", b"%d" % fault.retry_after_s))
        if fault.retry_after_ms is not None:
            headers.append((b"retry-after-ms", b"%d" % fault.retry_after_ms))
        await _fail(send, dialect, 429, headers=headers)

    async def _answer(
        self,
        call: Call,
        dialect: Dialect,
        tokens: int,
        body: bytes | None = None,
        events: list[bytes] | None = None,
    ) -> None:
        """Admit the request into the key's window, then send ``body`` or stream ``events``."""
        snapshot = self.quota.admit(call.key, tokens)
        headers = dialect.headers(snapshot)
        if not snapshot.admitted:
            headers.append((b"retry-after", b"%d" % snapshot.retry_after_s))
            await _fail(call.send, dialect, 429, headers=headers)
            return
        cut = call.fault is not None and call.fault.mode == "cut"
        if events is not None:
            await send_events(call.send, call.receive, headers, events, self._chunk_delay_s, cut)
            return
        assert body is not None
        headers.append(JSON_CONTENT_TYPE)
        await (send_cut_body if cut else send_body)(call.send, 200, headers, body)

    # -- OpenAI ---------------------------------------------------------------------------------

    async def _chat(self, call: Call) -> None:
        try:
            request = _chat_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await _fail(call.send, OPENAI, 400, f"Invalid request body: {exc}")
            return
        model = call.deployment or request.model
        if not model or not request.messages:
            await _fail(call.send, OPENAI, 400, "you must provide a model and messages")
            return
        prompt_tokens = openai_wire.chat_prompt_tokens(request)
        tool = openai_wire.chosen_tool(request)
        answer: Reply | ToolAnswer
        if tool is None:
            limit = request.max_completion_tokens or request.max_tokens
            answer = text_reply(call.key, self.settings.stream_chunks, limit)
        else:
            answer = tool_answer(tool.name, tool.parameters, self.settings.stream_chunks)
        id_, created = new_id("chatcmpl-"), int(time.time())
        tokens = prompt_tokens + answer.completion_tokens
        if request.stream:
            include_usage = (
                request.stream_options is not None and request.stream_options.include_usage
            )
            events = openai_wire.chat_chunks(
                id_, model, created, prompt_tokens, answer, include_usage
            )
            await self._answer(call, OPENAI, tokens, events=events)
        else:
            body = openai_wire.chat_body(id_, model, created, prompt_tokens, answer)
            await self._answer(call, OPENAI, tokens, body=body)

    async def _completion(self, call: Call) -> None:
        try:
            request = _completion_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await _fail(call.send, OPENAI, 400, f"Invalid request body: {exc}")
            return
        model = call.deployment or request.model
        if not model:
            await _fail(call.send, OPENAI, 400, "you must provide a model parameter")
            return
        prompt_tokens = openai_wire.prompt_tokens_of(request.prompt)
        reply = text_reply(call.key, self.settings.stream_chunks, request.max_tokens)
        id_, created = new_id("cmpl-"), int(time.time())
        tokens = prompt_tokens + reply.completion_tokens
        if request.stream:
            include_usage = (
                request.stream_options is not None and request.stream_options.include_usage
            )
            events = openai_wire.completion_chunks(
                id_, model, created, prompt_tokens, reply, include_usage
            )
            await self._answer(call, OPENAI, tokens, events=events)
        else:
            body = openai_wire.completion_body(id_, model, created, prompt_tokens, reply)
            await self._answer(call, OPENAI, tokens, body=body)

    async def _embeddings(self, call: Call) -> None:
        try:
            request = _embedding_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await _fail(call.send, OPENAI, 400, f"Invalid request body: {exc}")
            return
        model = call.deployment or request.model
        if not model or request.input in (None, "", []):
            await _fail(call.send, OPENAI, 400, "you must provide a model and a non-empty input")
            return
        dimensions = request.dimensions or 8
        body = openai_wire.embeddings_body(model, request, dimensions)
        await self._answer(call, OPENAI, openai_wire.prompt_tokens_of(request.input), body=body)

    async def _models(self, call: Call) -> None:
        body = self._anthropic_models if call.dialect is ANTHROPIC else self._openai_models
        await self._answer(call, call.dialect, 0, body=body)

    # -- Anthropic ------------------------------------------------------------------------------

    async def _messages(self, call: Call) -> None:
        try:
            request = _messages_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await _fail(call.send, ANTHROPIC, 400, f"Invalid request body: {exc}")
            return
        if not request.model or not request.messages or request.max_tokens is None:
            await _fail(call.send, ANTHROPIC, 400, "model, messages and max_tokens are required")
            return
        input_tokens = anthropic_wire.prompt_tokens(request)
        tool = anthropic_wire.chosen_tool(request)
        answer: Reply | ToolAnswer
        if tool is None:
            answer = text_reply(call.key, self.settings.stream_chunks, request.max_tokens)
        else:
            answer = tool_answer(tool.name, tool.input_schema, self.settings.stream_chunks)
        id_ = new_id("msg_")
        tokens = input_tokens + answer.completion_tokens
        if request.stream:
            events = anthropic_wire.message_events(id_, request.model, input_tokens, answer)
            await self._answer(call, ANTHROPIC, tokens, events=events)
        else:
            body = anthropic_wire.message_body(id_, request.model, input_tokens, answer)
            await self._answer(call, ANTHROPIC, tokens, body=body)

    async def _count_tokens(self, call: Call) -> None:
        try:
            request = _messages_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await _fail(call.send, ANTHROPIC, 400, f"Invalid request body: {exc}")
            return
        body = _encoder.encode({"input_tokens": anthropic_wire.prompt_tokens(request)})
        await send_body(call.send, 200, ANTHROPIC.json_headers(), body)


async def _fail(
    send: Send,
    dialect: Dialect,
    status: int,
    message: str | None = None,
    headers: Headers | None = None,
) -> None:
    if headers is None:
        headers = dialect.json_headers()
    else:
        headers.append(JSON_CONTENT_TYPE)
    await send_body(send, status, headers, dialect.error_body(status, message))


def _missing_key_message(dialect: Dialect, deployment: str | None) -> str:
    if dialect is ANTHROPIC:
        return "x-api-key header is required"
    if deployment is not None:
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
