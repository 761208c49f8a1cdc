"""Canned provider answers for the scripted transport: OpenAI and Anthropic JSON and SSE.

Shapes follow gateway/fake_provider/*_wire.py (what api.openai.com and api.anthropic.com send).
Every answer says the same text, `TEXT` (multi-byte characters included, so a charge computed
from streamed text counts UTF-8 bytes), with the usage `PROMPT_TOKENS` / `COMPLETION_TOKENS`
when it carries usage. `answer(request)` picks the right one for the endpoint and `stream` flag
of a request the gateway sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from tests.unit.lifecycle.scripted_transport import Reply, SentRequest

__all__ = [
    "COMPLETION_TOKENS",
    "PIECES",
    "PROMPT_TOKENS",
    "TEXT",
    "CannedStream",
    "answer",
    "anthropic_error",
    "canned_stream",
    "error_reply",
    "openai_error",
]

PIECES = ("Hello", ", wörld", "! ✓")
TEXT = "".join(PIECES)
PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
SSE = {"content-type": "text/event-stream"}
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class CannedStream:
    """SSE chunks (one event each) and the answer text each of them carries."""

    chunks: tuple[bytes, ...]
    texts: tuple[str, ...]

    def text_before(self, n: int) -> str:
        """The answer text of the first `n` chunks."""
        return "".join(self.texts[:n])

    def after_pieces(self, k: int) -> int:
        """How many chunks carry the first `k` pieces of `PIECES` (a cut point)."""
        want = "".join(PIECES[:k])
        return next(n for n in range(len(self.chunks) + 1) if self.text_before(n) == want)


def _data(payload: Any) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def _event(kind: str, payload: Any) -> bytes:
    return b"event: " + kind.encode() + b"\n" + _data(payload)


def _openai_usage(completion: int = COMPLETION_TOKENS) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
    }


# -- OpenAI ------------------------------------------------------------------------------------


def chat_json(model: str) -> bytes:
    message = {"role": "assistant", "content": TEXT, "refusal": None}
    return _encoder.encode(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": _openai_usage(),
        }
    )


def chat_stream(model: str, *, usage: bool) -> CannedStream:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000}
        return _data({**head, "model": model, "choices": [choice]})

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in PIECES]
    chunks.append(chunk({}, "stop"))
    texts = ["", *PIECES, ""]
    if usage:
        chunks.append(
            _data({"id": "chatcmpl-1", "model": model, "choices": [], "usage": _openai_usage()})
        )
        texts.append("")
    return CannedStream((*chunks, b"data: [DONE]\n\n"), (*texts, ""))


def completion_json(model: str) -> bytes:
    choice = {"text": TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}
    return _encoder.encode(
        {"id": "cmpl-1", "object": "text_completion", "model": model, "choices": [choice],
         "usage": _openai_usage()}
    )  # fmt: skip


def completion_stream(model: str, *, usage: bool) -> CannedStream:
    def chunk(text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return _data(
            {"id": "cmpl-1", "object": "text_completion", "model": model, "choices": [choice]}
        )

    chunks = [chunk(piece, None) for piece in PIECES] + [chunk("", "stop")]
    texts = [*PIECES, ""]
    if usage:
        chunks.append(
            _data({"id": "cmpl-1", "model": model, "choices": [], "usage": _openai_usage()})
        )
        texts.append("")
    return CannedStream((*chunks, b"data: [DONE]\n\n"), (*texts, ""))


def embeddings_json(model: str) -> bytes:
    data = [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}]
    usage = {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}
    return _encoder.encode({"object": "list", "data": data, "model": model, "usage": usage})


def _response(model: str, status: str, usage: bool) -> dict[str, Any]:
    part = {"type": "output_text", "text": TEXT, "annotations": []}
    item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
            "content": [part]}  # fmt: skip
    counts = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}  # fmt: skip
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": model,
        "output": [item] if status == "completed" else [],
        "usage": counts if usage else None,
    }


def responses_json(model: str) -> bytes:
    return _encoder.encode(_response(model, "completed", True))


def responses_stream(model: str, *, usage: bool) -> CannedStream:
    events: list[bytes] = []
    texts: list[str] = []

    def emit(kind: str, carries: str = "", **fields: Any) -> None:
        """One event; `carries`: the answer text it streams (a delta's)."""
        events.append(_event(kind, {"type": kind, "sequence_number": len(events), **fields}))
        texts.append(carries)

    opening = _response(model, "in_progress", False)
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    at: dict[str, Any] = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    emit("response.output_item.added", output_index=0, item={"id": "msg_1", "type": "message"})
    emit("response.content_part.added", **at, part={"type": "output_text", "text": ""})
    for piece in PIECES:
        emit("response.output_text.delta", piece, **at, delta=piece)
    emit("response.output_text.done", **at, text=TEXT)
    emit("response.output_item.done", output_index=0, item={"id": "msg_1", "type": "message"})
    emit("response.completed", response=_response(model, "completed", usage))
    return CannedStream(tuple(events), tuple(texts))


def openai_error(message: str = "invalid request", code: str = "invalid_value") -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return _encoder.encode({"error": error})


# -- Anthropic ---------------------------------------------------------------------------------


def message_json(model: str) -> bytes:
    usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
    return _encoder.encode(
        {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
         "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
         "stop_sequence": None, "usage": usage}
    )  # fmt: skip


def message_stream(model: str, *, usage: bool) -> CannedStream:
    opening: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant",
                               "model": model, "content": [], "stop_reason": None}  # fmt: skip
    closing: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    if usage:
        opening["usage"] = {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}
        closing["usage"] = {"output_tokens": COMPLETION_TOKENS}
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    events = [
        _event("message_start", {"type": "message_start", "message": opening}),
        _event("content_block_start", block),
        _event("ping", {"type": "ping"}),
    ]
    events += [
        _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": piece}})
        for piece in PIECES
    ]  # fmt: skip
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(_event("message_delta", closing))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return CannedStream(tuple(events), ("", "", "", *PIECES, "", "", ""))


def anthropic_error(message: str = "invalid request") -> bytes:
    error = {"type": "invalid_request_error", "message": message}
    return _encoder.encode({"type": "error", "error": error})


# -- picking the answer ------------------------------------------------------------------------


def _wants_usage(doc: dict[str, Any]) -> bool:
    options = doc.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def canned_stream(request: SentRequest, *, usage: bool = True) -> CannedStream | None:
    """The stream a provider sends for `request`; None when it does not ask for one.

    OpenAI-kind chat and completions carry a usage chunk only when asked (and `usage`).
    """
    doc = request.json()
    if not doc.get("stream"):
        return None
    model, path = str(doc.get("model", "")), request.path
    if path.endswith("/chat/completions"):
        return chat_stream(model, usage=usage and _wants_usage(doc))
    if path.endswith("/completions"):
        return completion_stream(model, usage=usage and _wants_usage(doc))
    if path.endswith("/responses"):
        return responses_stream(model, usage=usage)
    if path.endswith("/messages"):
        return message_stream(model, usage=usage)
    raise AssertionError(f"no canned stream for {path}")


def answer(request: SentRequest, *, usage: bool = True) -> Reply:
    """The provider's success for `request`: JSON, or the stream `canned_stream` gives."""
    stream = canned_stream(request, usage=usage)
    if stream is not None:
        return Reply(headers=SSE, chunks=stream.chunks)
    model, path = str(request.json().get("model", "")), request.path
    bodies = {
        "/chat/completions": chat_json,
        "/completions": completion_json,
        "/embeddings": embeddings_json,
        "/responses": responses_json,
        "/messages": message_json,
    }
    suffix = next(s for s in bodies if path.endswith(s))
    return Reply(body=bodies[suffix](model))


def error_reply(
    request: SentRequest, status: int, headers: Mapping[str, str] | None = None
) -> Reply:
    """An error answer of `status` in the provider's own dialect."""
    body = anthropic_error() if request.path.endswith("/messages") else openai_error()
    return Reply(status=status, body=body).with_headers(headers or {})
