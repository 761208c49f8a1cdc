"""What each API endpoint answers once the pipeline has let a request through.

Every answer is admitted into the key's rate-limit window first (a full window answers 429
with ``retry-after``), then sent whole or streamed one event per ASGI message. Refusals
(400 on a malformed body, or on one the vendor would refuse: ``vendor_checks.py``) carry the
same rate-limit headers as answers, as upstream's do. The answer is a tool call while the
request offers tools and the turn is the user's (``chosen_tool``), else a JSON document when
it asks for structured output, else text.
The faults that let a request through shape its answer here: ``"cut"`` drops it half-way,
``"hostile_headers"`` spoils its rate-limit headers, ``"long_stream"`` sets its length and pace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from gateway.fake_provider import anthropic_wire, openai_wire, responses_wire
from gateway.fake_provider.asgi import (
    JSON_CONTENT_TYPE,
    Receive,
    Send,
    send_body,
    send_cut_body,
    send_events,
)
from gateway.fake_provider.dialect import ANTHROPIC, Dialect, send_error
from gateway.fake_provider.faults import Fault, hostile
from gateway.fake_provider.quota import QuotaBook
from gateway.fake_provider.reply import (
    Reply,
    ToolAnswer,
    json_reply,
    new_id,
    text_reply,
    tool_answer,
)
from gateway.fake_provider.settings import FakeSettings
from gateway.fake_provider.vendor_checks import (
    Refusal,
    check_anthropic_roles,
    check_chat,
    check_messages,
    check_responses,
)

__all__ = ["Call", "Endpoints"]

_R = TypeVar("_R")

_chat_decoder = msgspec.json.Decoder(openai_wire.ChatRequest)
_completion_decoder = msgspec.json.Decoder(openai_wire.CompletionRequest)
_embedding_decoder = msgspec.json.Decoder(openai_wire.EmbeddingRequest)
_messages_decoder = msgspec.json.Decoder(anthropic_wire.MessagesRequest)
_responses_decoder = msgspec.json.Decoder(responses_wire.ResponsesRequest)
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Call:
    """One authenticated API request, past its faults, on its way to an endpoint."""

    key: str
    body: bytes
    deployment: str | None
    """The Azure deployment named in the path; it stands for the model."""
    dialect: Dialect
    fault: Fault | None
    """A fault that lets the request through but changes its answer ("slow", "cut",
    "hostile_headers", "long_stream")."""
    send: Send
    receive: Receive


class Endpoints:
    """The handlers of the API paths, sharing the settings and the rate-limit windows."""

    def __init__(self, settings: FakeSettings, quota: QuotaBook) -> None:
        self.quota = quota
        self._chunks = settings.stream_chunks
        self._chunk_delay_s = settings.chunk_delay_ms / 1000
        self._openai_models = openai_wire.models_body(settings.models)
        self._anthropic_models = anthropic_wire.models_body(settings.models)

    async def refuse(
        self,
        call: Call,
        status: int,
        message: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        """An error in the call's dialect, with the key's current rate-limit headers."""
        await send_error(
            call.send,
            call.dialect,
            status,
            message,
            call.dialect.headers(self.quota.peek(call.key)),
            param=param,
            code=code,
        )

    async def _refused(self, call: Call, refusal: Refusal | None) -> bool:
        """Send the 400 of a vendor check that failed; False when there is none."""
        if refusal is None:
            return False
        await self.refuse(call, 400, refusal.message, refusal.param, refusal.code)
        return True

    def _chunks_of(self, call: Call) -> int:
        """Content deltas in the answer: the fault ``"long_stream"``'s, else the settings'."""
        fault = call.fault
        return fault.chunks if fault is not None and fault.mode == "long_stream" else self._chunks

    async def _answer(
        self, call: Call, tokens: int, body: bytes | None = None, events: list[bytes] | None = None
    ) -> None:
        """Admit the request into the key's window, then send ``body`` or stream ``events``."""
        snapshot = self.quota.admit(call.key, tokens)
        headers = call.dialect.headers(snapshot)
        if not snapshot.admitted:
            headers.append((b"retry-after", b"%d" % snapshot.retry_after_s))
            await send_error(call.send, call.dialect, 429, None, headers)
            return
        mode = call.fault.mode if call.fault is not None else None
        if mode == "hostile_headers":
            headers = hostile(headers)
        cut = mode == "cut"
        if events is not None:
            delay_s = self._chunk_delay_s
            if call.fault is not None and mode == "long_stream":
                delay_s = call.fault.delay_ms / 1000
            await send_events(call.send, call.receive, headers, events, delay_s, cut)
            return
        assert body is not None
        headers.append(JSON_CONTENT_TYPE)
        await (send_cut_body if cut else send_body)(call.send, 200, headers, body)

    async def _decode(self, call: Call, decoder: msgspec.json.Decoder[_R]) -> _R | None:
        """The request body, or None once a 400 has been sent for a body that does not decode."""
        try:
            return decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            await self.refuse(call, 400, f"Invalid request body: {exc}")
            return None

    # -- OpenAI ---------------------------------------------------------------------------------

    async def chat(self, call: Call) -> None:
        request = await self._decode(call, _chat_decoder)
        if request is None:
            return
        model = call.deployment or request.model
        if not model or not request.messages:
            await self.refuse(call, 400, "you must provide a model and messages")
            return
        if await self._refused(call, check_chat(request, model)):
            return
        prompt_tokens = openai_wire.chat_prompt_tokens(request)
        tool = openai_wire.chosen_tool(request)
        schema = openai_wire.output_schema(request)
        answer: Reply | ToolAnswer
        if tool is not None:
            answer = tool_answer(tool.name, tool.parameters, self._chunks_of(call))
        elif schema is not None:
            answer = json_reply(schema, self._chunks_of(call))
        else:
            limit = request.max_completion_tokens or request.max_tokens
            answer = text_reply(call.key, self._chunks_of(call), limit)
        id_, created = new_id("chatcmpl-"), int(time.time())
        tokens = prompt_tokens + answer.completion_tokens
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            events = openai_wire.chat_chunks(id_, model, created, prompt_tokens, answer, usage)
            await self._answer(call, tokens, events=events)
        else:
            body = openai_wire.chat_body(id_, model, created, prompt_tokens, answer)
            await self._answer(call, tokens, body=body)

    async def completion(self, call: Call) -> None:
        request = await self._decode(call, _completion_decoder)
        if request is None:
            return
        model = call.deployment or request.model
        if not model:
            await self.refuse(call, 400, "you must provide a model parameter")
            return
        prompt_tokens = openai_wire.prompt_tokens_of(request.prompt)
        reply = text_reply(call.key, self._chunks_of(call), request.max_tokens)
        id_, created = new_id("cmpl-"), int(time.time())
        tokens = prompt_tokens + reply.completion_tokens
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            events = openai_wire.completion_chunks(id_, model, created, prompt_tokens, reply, usage)
            await self._answer(call, tokens, events=events)
        else:
            body = openai_wire.completion_body(id_, model, created, prompt_tokens, reply)
            await self._answer(call, tokens, body=body)

    async def embeddings(self, call: Call) -> None:
        request = await self._decode(call, _embedding_decoder)
        if request is None:
            return
        model = call.deployment or request.model
        if not model or request.input in (None, "", []):
            await self.refuse(call, 400, "you must provide a model and a non-empty input")
            return
        body = openai_wire.embeddings_body(model, request, request.dimensions or 8)
        await self._answer(call, openai_wire.prompt_tokens_of(request.input), body=body)

    async def responses(self, call: Call) -> None:
        """The Responses API; on Azure (its v1 surface) the body's model names the deployment."""
        request = await self._decode(call, _responses_decoder)
        if request is None:
            return
        model = call.deployment or request.model
        if not model:
            await self.refuse(call, 400, "you must provide a model parameter")
            return
        if await self._refused(call, check_responses(request)):
            return
        prompt_tokens = responses_wire.input_tokens(request)
        try:
            function = responses_wire.chosen_function(request)
        except ValueError as exc:
            await self.refuse(call, 400, str(exc))
            return
        schema = responses_wire.output_schema(request)
        answer: Reply | ToolAnswer
        if function is not None:
            answer = tool_answer(function.name, function.parameters, self._chunks_of(call))
        elif schema is not None:
            answer = json_reply(schema, self._chunks_of(call))
        else:
            answer = text_reply(call.key, self._chunks_of(call), request.max_output_tokens)
        tokens = prompt_tokens + answer.completion_tokens
        if request.stream:
            events = responses_wire.response_events(model, request, prompt_tokens, answer)
            await self._answer(call, tokens, events=events)
        else:
            body = responses_wire.response_body(model, request, prompt_tokens, answer)
            await self._answer(call, tokens, body=body)

    async def models(self, call: Call) -> None:
        """The model list, in Anthropic's shape when the key came in ``x-api-key``."""
        body = self._anthropic_models if call.dialect is ANTHROPIC else self._openai_models
        await self._answer(call, 0, body=body)

    # -- Anthropic ------------------------------------------------------------------------------

    async def messages(self, call: Call) -> None:
        request = await self._decode(call, _messages_decoder)
        if request is None:
            return
        if await self._refused(call, check_messages(request)):
            return
        input_tokens = anthropic_wire.prompt_tokens(request)
        tool = anthropic_wire.chosen_tool(request)
        schema = anthropic_wire.output_schema(request)
        answer: Reply | ToolAnswer
        if tool is not None:
            answer = tool_answer(tool.name, tool.input_schema, self._chunks_of(call))
        elif schema is not None:
            answer = json_reply(schema, self._chunks_of(call))
        else:
            answer = text_reply(call.key, self._chunks_of(call), request.max_tokens)
        id_ = new_id("msg_")
        tokens = input_tokens + answer.completion_tokens
        if request.stream:
            events = anthropic_wire.message_events(id_, request.model, input_tokens, answer)
            await self._answer(call, tokens, events=events)
        else:
            body = anthropic_wire.message_body(id_, request.model, input_tokens, answer)
            await self._answer(call, tokens, body=body)

    async def count_tokens(self, call: Call) -> None:
        """``{"input_tokens": n}``; counting is free, so it stays outside the windows."""
        request = await self._decode(call, _messages_decoder)
        if request is None or await self._refused(call, check_anthropic_roles(request.messages)):
            return
        body = _encoder.encode({"input_tokens": anthropic_wire.prompt_tokens(request)})
        await send_body(call.send, 200, ANTHROPIC.json_headers(), body)
