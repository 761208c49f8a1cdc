"""An OpenAI chat chunk stream rewritten, chunk by chunk, as an Anthropic Messages event stream.

    OpenAI chunk                                 Anthropic event(s)
    first chunk                             ->   message_start (usage: the prompt's estimate)
    delta.content / delta.refusal           ->   content_block_start text (once), then
                                                 content_block_delta text_delta
    delta.tool_calls[k] first seen          ->   content_block_start tool_use {id, name, input: {}}
    delta.tool_calls[k].function.arguments  ->   content_block_delta input_json_delta
    finish_reason, usage chunk              ->   remembered for the end
    data: [DONE]                            ->   content_block_stop, message_delta {stop_reason,
                                                 usage}, message_stop
    data: {"error": {...}}                  ->   event: error, and the stream ends
    an event too long to hold (see ``sse``) ->   event: error, and the stream ends

Anthropic content blocks follow one another: a block stops before the next starts. OpenAI may
stream several tool calls and may even interleave their argument deltas, and it never says when
one call is done. So the first tool call (and the text) stream live; a tool call that starts
while another is open is held back whole and emitted as its own block (start, one delta, stop)
once the open block closes, at the end of the message or when text resumes. The output is
always well formed and nothing is lost; only a second parallel call arrives all at once.

OpenAI reports usage only at the end, so ``message_start`` carries the caller's estimate of
the prompt (``input_tokens``, as Anthropic's own message_start reports the prompt up front) and
the final ``message_delta`` the upstream's real counts, which the SDKs take over the estimate.

The stream only ends cleanly on ``[DONE]``: ``finish()`` before that means the upstream was cut,
and the client gets an ``error`` event rather than a ``message_stop`` that would pass a
truncated answer off as complete.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import UpstreamError, anthropic_error_body
from gateway.translate.error_bodies import anthropic_error_type
from gateway.translate.sse import MAX_SSE_EVENT_BYTES, SSEParser, encode_anthropic_event
from gateway.translate.vocabulary import (
    anthropic_usage,
    message_id,
    openai_usage_counts,
    stop_reason,
)

__all__ = ["OpenAIToAnthropicStream"]

_decoder = msgspec.json.Decoder()


class _ToolCall:
    __slots__ = ("block", "held", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.block: int | None = None  # Anthropic block index, once started
        self.held: list[str] = []  # argument fragments not yet emitted


class OpenAIToAnthropicStream:
    """Feed it upstream OpenAI SSE bytes; it returns the Anthropic SSE bytes for the client."""

    def __init__(
        self, model: str, *, input_tokens: int = 0, max_event_bytes: int = MAX_SSE_EVENT_BYTES
    ) -> None:
        """``input_tokens``: the prompt's estimate, reported by ``message_start``."""
        self._parser = SSEParser(max_event_bytes)
        self._model = model
        self._input_tokens = max(input_tokens, 0)
        self._started = False
        self._upstream_id = ""
        self._id = message_id("")
        self._blocks = 0  # content blocks started so far
        self._open: int | None = None  # index of the open block
        self._open_text = False  # the open block is a text block
        self._calls: dict[int, _ToolCall] = {}  # OpenAI tool call index -> call
        self._waiting: list[_ToolCall] = []  # tool calls held back, in order of arrival
        self._finish_reason: str | None = None
        self._refused = False
        self._usage: dict[str, Any] | None = None
        self._completed = False
        self._failed = False

    @property
    def completed(self) -> bool:
        """True once the upstream's ``data: [DONE]`` was seen."""
        return self._completed

    @property
    def usage(self) -> tuple[int, int] | None:
        """``(prompt tokens, completion tokens)`` from the upstream's usage chunk, once seen;
        (-1, -1) when its counts are unusable (see ``vocabulary``)."""
        return None if self._usage is None else openai_usage_counts(self._usage)

    def feed(self, chunk: bytes) -> bytes:
        """Translate the chunks ``chunk`` completes; the rest waits for the next chunk."""
        out = bytearray()
        for event in self._parser.feed(chunk):
            if self._completed or self._failed:
                break
            if event.is_done:
                out += self._end()
                continue
            try:
                data = _decoder.decode(event.data)
            except (msgspec.DecodeError, RecursionError):
                data = None
            if not isinstance(data, dict):
                out += self._error(
                    "api_error", "the upstream sent a chunk that is not a JSON object"
                )
            elif isinstance(data.get("error"), dict):
                error = data["error"]
                message = error.get("message")
                text = message if isinstance(message, str) and message else "upstream error"
                out += self._error(anthropic_error_type(error.get("type")), text)
            else:
                out += self._chunk(data)
        if self._parser.overflowed and not (self._completed or self._failed):
            out += self._error("api_error", "the upstream sent an event too large to translate")
        return bytes(out)

    def finish(self) -> bytes:
        """Close the stream: nothing if it ended properly, an error event if it was cut."""
        if self._completed or self._failed:
            return b""
        self._failed = True
        error = UpstreamError("the upstream stream ended before the message was complete")
        return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"

    def _chunk(self, data: dict[str, Any]) -> bytes:
        out = b""
        if not self._upstream_id and isinstance(data.get("id"), str):
            self._upstream_id = data["id"]
        if not self._started and data.get("choices"):
            # Azure opens with a choice-less chunk of prompt filter results and an empty id.
            out += self._message_start()
        usage = data.get("usage")
        if usage is not None:
            self._usage = usage if isinstance(usage, dict) else {}  # {}: unknown, shown as 0
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # only one choice is ever asked for
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for field in ("content", "refusal"):
                    if isinstance(delta.get(field), str) and delta[field]:
                        self._refused = self._refused or field == "refusal"
                        out += self._text(delta[field])
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        out += self._tool_call(call)
            if isinstance(choice.get("finish_reason"), str):
                self._finish_reason = choice["finish_reason"]
        return out

    def _message_start(self) -> bytes:
        self._started = True
        self._id = message_id(self._upstream_id)
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return encode_anthropic_event(
            "message_start", {"type": "message_start", "message": message}
        )

    def _text(self, text: str) -> bytes:
        out = b""
        if not self._open_text:
            out += self._close_open() + self._release_waiting()
            out += self._start_block({"type": "text", "text": ""})
            self._open_text = True
        assert self._open is not None
        return out + self._delta(self._open, {"type": "text_delta", "text": text})

    def _tool_call(self, delta: dict[str, Any]) -> bytes:
        index = delta.get("index")
        if not isinstance(index, int):
            # Some OpenAI-compatible servers omit the index: a new id means a new call.
            index = max(len(self._calls) - (delta.get("id") is None), 0)
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        call = self._calls.get(index)
        out = b""
        if call is None:
            call_id, name = delta.get("id"), function.get("name")
            call = _ToolCall(
                call_id if isinstance(call_id, str) and call_id else f"toolu_{self._id}_{index}",
                name if isinstance(name, str) else "",
            )
            self._calls[index] = call
            if self._open is not None and not self._open_text:
                self._waiting.append(call)
            else:
                out += self._close_open() + self._start_tool(call)
        if call.block is None:
            call.held.append(arguments)
        elif arguments:
            # Once started, a call's block is the open one, or was released whole: a fragment
            # arriving after its stop is still addressed to its block so no argument is lost.
            out += self._delta(call.block, {"type": "input_json_delta", "partial_json": arguments})
        return out

    def _start_tool(self, call: _ToolCall) -> bytes:
        call.block = self._blocks
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        return self._start_block(block)

    def _release_waiting(self) -> bytes:
        out = b""
        for call in self._waiting:
            out += self._start_tool(call)
            arguments = "".join(call.held)
            call.held.clear()
            if arguments:
                assert call.block is not None
                out += self._delta(
                    call.block, {"type": "input_json_delta", "partial_json": arguments}
                )
            out += self._close_open()
        self._waiting.clear()
        return out

    def _start_block(self, block: dict[str, Any]) -> bytes:
        self._open = self._blocks
        self._open_text = False
        self._blocks += 1
        event = {"type": "content_block_start", "index": self._open, "content_block": block}
        return encode_anthropic_event("content_block_start", event)

    def _close_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_text = self._open, None, False
        return encode_anthropic_event(
            "content_block_stop", {"type": "content_block_stop", "index": index}
        )

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        return encode_anthropic_event("content_block_delta", event)

    def _end(self) -> bytes:
        out = b"" if self._started else self._message_start()
        out += self._close_open() + self._release_waiting()
        reason = stop_reason(self._finish_reason)
        if self._refused and reason == "end_turn":
            reason = "refusal"
        usage = anthropic_usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        out += encode_anthropic_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        out += encode_anthropic_event("message_stop", {"type": "message_stop"})
        self._completed = True
        return out

    def _error(self, anthropic_type: str, message: str) -> bytes:
        self._failed = True
        body = {"type": "error", "error": {"type": anthropic_type, "message": message}}
        return encode_anthropic_event("error", body)
