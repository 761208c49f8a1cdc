"""An Anthropic Messages event stream rewritten, chunk by chunk, as an OpenAI chat chunk stream.

    Anthropic event                              OpenAI chunk(s)
    message_start                           ->   nothing yet (the id, the usage so far)
    content_block_start text (non-empty)    ->   delta {content}
    content_block_delta text_delta          ->   delta {content}
    content_block_start tool_use            ->   delta {tool_calls: [{index, id, type, function:
                                                   {name, arguments: ""}}]}
    content_block_delta input_json_delta    ->   delta {tool_calls: [{index, function:
                                                   {arguments: partial_json}}]}
    message_delta                           ->   delta {}, finish_reason
    message_stop                            ->   usage chunk (choices: []) if include_usage,
                                                 then data: [DONE]
    error                                   ->   data: {"error": {...}}, and the stream ends
    an event too long to hold (see ``sse``) ->   data: {"error": {...}}, and the stream ends
    ping, content_block_stop, thinking      ->   nothing

The first delta also carries ``role: assistant``, as OpenAI's first chunk does: with the text
(``{role, content}``), or with the first tool call and ``content: null`` as OpenAI sends on a
tool-call turn. An eager ``{role, content: ""}`` at message_start would tell a client that a
tool-call turn has text (the AI SDK then emits an empty text part); an answer with neither text
nor tool calls gets ``{role, content: ""}`` just before its finish_reason.

A tool call's ``index`` is its position among the message's tool calls, so parallel calls keep
distinct indexes. The stream only ends cleanly on ``message_stop``: ``finish()`` before that
means the upstream was cut, and the client gets an error chunk rather than a ``[DONE]`` that
would pass a truncated answer off as complete.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.errors import UpstreamError, openai_error_body
from gateway.translate.error_bodies import openai_error_type
from gateway.translate.sse import (
    MAX_SSE_EVENT_BYTES,
    OPENAI_DONE,
    SSEEvent,
    SSEParser,
    encode_openai_chunk,
)
from gateway.translate.vocabulary import (
    anthropic_usage_counts,
    chat_completion_id,
    finish_reason,
    openai_usage,
)

__all__ = ["AnthropicToOpenAIStream"]

_decoder = msgspec.json.Decoder()
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class AnthropicToOpenAIStream:
    """Feed it upstream Anthropic SSE bytes; it returns the OpenAI SSE bytes for the client."""

    def __init__(
        self,
        model: str,
        include_usage: bool,
        *,
        created: int | None = None,
        max_event_bytes: int = MAX_SSE_EVENT_BYTES,
    ) -> None:
        self._parser = SSEParser(max_event_bytes)
        self._model = model
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id = chat_completion_id("")
        self._usage: dict[str, Any] | None = None
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._role_sent = False  # a delta carrying role: assistant went out
        self._finished = False  # a finish_reason chunk went out
        self._completed = False
        self._failed = False

    @property
    def completed(self) -> bool:
        """True once the upstream's ``message_stop`` was seen."""
        return self._completed

    @property
    def usage(self) -> tuple[int, int] | None:
        """``(input tokens incl. cache reads and writes, output tokens)`` once seen; (-1, -1)
        when the upstream's counts are unusable (see ``vocabulary``)."""
        return None if self._usage is None else anthropic_usage_counts(self._usage)

    def feed(self, chunk: bytes) -> bytes:
        """Translate the events ``chunk`` completes; the rest waits for the next chunk."""
        out = bytearray()
        for event in self._parser.feed(chunk):
            if self._completed or self._failed:
                break
            out += self._translate(event)
        if self._parser.overflowed and not (self._completed or self._failed):
            out += self._error("api_error", "the upstream sent an event too large to translate")
        return bytes(out)

    def finish(self) -> bytes:
        """Close the stream: nothing if it ended properly, an error chunk if it was cut."""
        if self._completed or self._failed:
            return b""
        self._failed = True
        error = UpstreamError("the upstream stream ended before the message was complete")
        return b"data: " + openai_error_body(error) + b"\n\n"

    def _translate(self, event: SSEEvent) -> bytes:
        try:
            data = _decoder.decode(event.data)
        except (msgspec.DecodeError, RecursionError):
            return self._error("api_error", "the upstream sent an event that is not JSON")
        if not isinstance(data, dict):
            return self._error("api_error", "the upstream sent an event that is not an object")
        kind = data.get("type", event.event)
        if kind == "message_start":
            return self._message_start(data.get("message"))
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), data.get("delta"))
        if kind == "message_delta":
            self._add_usage(data.get("usage"))
            delta = data.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            return self._finish_reason(finish_reason(reason))
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            error = data.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            return self._error(
                error.get("type"), message if isinstance(message, str) else "upstream error"
            )
        return b""  # ping, content_block_stop, and event types newer than this code

    def _message_start(self, message: Any) -> bytes:
        if isinstance(message, dict):
            self._id = chat_completion_id(message.get("id"))
            self._usage = {}
            self._add_usage(message.get("usage"))
        return b""

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "text" and block.get("text"):
            return self._delta({"content": block["text"]})
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return b""
        position = self._tool_index[index] = len(self._tool_index)
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return self._delta({"tool_calls": [call]})

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        if not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return self._delta({"content": delta["text"]})
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            call = {
                "index": self._tool_index[index],
                "function": {"arguments": delta["partial_json"]},
            }
            return self._delta({"tool_calls": [call]})
        return b""  # empty deltas, thinking, signatures and citations have no OpenAI field

    def _finish_reason(self, reason: str) -> bytes:
        self._finished = True
        out = b"" if self._role_sent else self._delta({"content": ""})
        return out + self._chunk({}, reason)

    def _message_stop(self) -> bytes:
        out = b"" if self._finished else self._finish_reason("stop")
        if self._include_usage:
            out += encode_openai_chunk(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": openai_usage(self._usage or {}),
                }
            )
        self._completed = True
        return out + OPENAI_DONE

    def _add_usage(self, usage: Any) -> None:
        """Anthropic usage counts are cumulative: a later value replaces an earlier one.

        Kept as sent, whatever its type: accounting must see a malformed count to distrust it.
        """
        if not isinstance(usage, dict):
            return
        if self._usage is None:
            self._usage = {}
        for name in _USAGE_FIELDS:
            if usage.get(name) is not None:
                self._usage[name] = usage[name]

    def _error(self, anthropic_type: Any, message: str) -> bytes:
        self._failed = True
        error = {
            "message": message,
            "type": openai_error_type(anthropic_type),
            "param": None,
            "code": None,
        }
        return encode_openai_chunk({"error": error})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        """A content or tool-call chunk; the first one also says ``role: assistant``."""
        if self._role_sent:
            return self._chunk(delta)
        self._role_sent = True
        return self._chunk({"role": "assistant", "content": None, **delta})

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        return encode_openai_chunk(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                ],
            }
        )
