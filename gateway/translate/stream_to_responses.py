"""An Anthropic Messages event stream rewritten, event by event, as the Responses API's events.

    Anthropic event                           Responses event(s)
    message_start                        ->   response.created, response.in_progress
    content_block_start text             ->   response.output_item.added (a message item, unless
                                              one is open), response.content_part.added
    content_block_delta text_delta       ->   response.output_text.delta
    content_block_stop (text)            ->   response.output_text.done, response.content_part.done
    content_block_start tool_use         ->   response.output_item.done (the open item, if any),
                                              response.output_item.added (a function_call item)
    content_block_delta input_json_delta ->   response.function_call_arguments.delta
    content_block_stop (tool_use)        ->   response.function_call_arguments.done
    message_delta                        ->   response.output_item.done of the open item, with
                                              the status its stop reason gives
    message_stop                         ->   response.completed, or response.incomplete (see
                                              ``anthropic_to_responses``), the whole response
                                              and its usage in it
    error                                ->   error, and the stream ends
    an event too long to hold (see ``sse``) -> error, and the stream ends
    ping, thinking, signatures, citations ->  nothing

Every event is ``event: <type>`` and a ``data:`` object with the same ``type`` and a
``sequence_number`` counted from 0, as api.openai.com sends them. Items and ids are those of the
complete answer (``anthropic_to_responses``). An item is closed when the next one opens or once
the stop reason is known, so that a cut by ``max_tokens`` marks it incomplete.

The stream only ends cleanly on ``message_stop``: ``finish()`` before that means the upstream
was cut, and the client gets an ``error`` event (code ``upstream_cut``, in the shape Keyway's
Responses passthrough sends, which the OpenAI SDK raises as an APIError) rather than a
``response.completed`` that would pass a truncated answer off as complete.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.translate.anthropic_to_responses import (
    function_call_item,
    message_item,
    message_item_id,
    output_text,
    response_id,
    response_object,
    response_status,
    responses_usage,
)
from gateway.translate.error_bodies import openai_error_type
from gateway.translate.sse import MAX_SSE_EVENT_BYTES, SSEEvent, SSEParser
from gateway.translate.vocabulary import anthropic_usage_counts

__all__ = ["AnthropicToResponsesStream"]

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class _Block:
    """Where one Anthropic content block goes: an item, and a content part for text."""

    __slots__ = ("item", "output_index", "part", "pieces")

    def __init__(self, item: dict[str, Any], output_index: int, part: int | None) -> None:
        self.item = item
        self.output_index = output_index
        self.part = part  # the content index of a text block; None for a tool call
        self.pieces: list[str] = []


class AnthropicToResponsesStream:
    """Feed it upstream Anthropic SSE bytes; it returns the Responses API events for the client."""

    def __init__(
        self,
        model: str,
        settings: dict[str, Any],
        *,
        created_at: int | None = None,
        max_event_bytes: int = MAX_SSE_EVENT_BYTES,
    ) -> None:
        self._parser = SSEParser(max_event_bytes)
        self._model = model
        self._settings = settings  # see anthropic_to_responses.response_settings
        self._created_at = int(time.time()) if created_at is None else created_at
        self._upstream_id: Any = ""
        self._sequence = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the last item, until it is done
        self._blocks: dict[int, _Block] = {}  # open Anthropic blocks by index
        self._stop_reason: Any = None
        self._usage: dict[str, Any] | None = None
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
            out += self._error("server_error", "bad_upstream_body",
                               "the upstream sent an event too large to translate")  # fmt: skip
        return bytes(out)

    def finish(self) -> bytes:
        """Close the stream: nothing if it ended properly, an error event if it was cut."""
        if self._completed or self._failed:
            return b""
        return self._error("upstream_error", "upstream_cut",
                           "the upstream stream ended before the response was complete")  # fmt: skip

    def _translate(self, event: SSEEvent) -> bytes:
        try:
            data = _decoder.decode(event.data)
        except (msgspec.DecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return self._error("server_error", "bad_upstream_body",
                               "the upstream sent an event that is not a JSON object")  # fmt: skip
        kind = data.get("type", event.event)
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                self._upstream_id = message.get("id")
                self._usage = {}  # from here on the usage is known, or known to be unusable
                self._add_usage(message.get("usage"))
            return self._start()
        if kind == "error":
            error = data.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            kind = openai_error_type(error.get("type"))
            return self._error(
                kind, kind, message if isinstance(message, str) else "upstream error"
            )
        if kind == "content_block_start":
            return self._start() + self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._start() + self._block_delta(data.get("index"), data.get("delta"))
        if kind == "content_block_stop":
            return self._start() + self._block_stop(data.get("index"))
        if kind == "message_delta":
            self._add_usage(data.get("usage"))
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
                return self._start() + self._close_open()
            return b""
        if kind == "message_stop":
            return self._start() + self._message_stop()
        return b""  # ping, and event types newer than this code

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        opening = self._response("in_progress", None, None)
        return self._emit("response.created", response=opening) + self._emit(
            "response.in_progress", response=opening
        )

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(index, int) or not isinstance(block, dict):
            return b""
        kind, out = block.get("type"), b""
        if kind == "text":
            if self._open is None or self._open["type"] != "message":
                out += self._close_open()
                item_id = message_item_id(self._upstream_id, len(self._output))
                out += self._open_item(message_item(item_id, "in_progress", []))
            assert self._open is not None
            part = len(self._open["content"])
            self._open["content"].append(output_text(""))
            slot = _Block(self._open, len(self._output) - 1, part)
            self._blocks[index] = slot
            out += self._emit("response.content_part.added", **self._at(slot), part=output_text(""))
            text = block.get("text")
            if isinstance(text, str) and text:
                out += self._text_delta(slot, text)
        elif kind == "tool_use":
            out += self._close_open()
            call_id, name = block.get("id"), block.get("name")
            call_id = call_id if isinstance(call_id, str) else f"toolu_{index}"
            name = name if isinstance(name, str) else ""
            item = function_call_item(call_id, name, "", "in_progress")
            out += self._open_item(item)
            self._blocks[index] = _Block(item, len(self._output) - 1, None)
        return out

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        slot = self._blocks.get(index) if isinstance(index, int) else None
        if slot is None or not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta" and slot.part is not None:
            text = delta.get("text")
            return self._text_delta(slot, text) if isinstance(text, str) and text else b""
        if kind == "input_json_delta" and slot.part is None:
            piece = delta.get("partial_json")
            if not isinstance(piece, str) or not piece:
                return b""
            slot.pieces.append(piece)
            return self._emit(
                "response.function_call_arguments.delta",
                item_id=slot.item["id"], output_index=slot.output_index, delta=piece,
            )  # fmt: skip
        return b""  # citations and other deltas have no Responses event

    def _text_delta(self, slot: _Block, text: str) -> bytes:
        slot.pieces.append(text)
        return self._emit("response.output_text.delta", **self._at(slot), delta=text, logprobs=[])

    def _block_stop(self, index: Any) -> bytes:
        slot = self._blocks.pop(index, None) if isinstance(index, int) else None
        if slot is None:
            return b""
        text = "".join(slot.pieces)
        if slot.part is not None:
            part = output_text(text)
            slot.item["content"][slot.part] = part
            at = self._at(slot)
            return self._emit(
                "response.output_text.done", **at, text=text, logprobs=[]
            ) + self._emit("response.content_part.done", **at, part=part)
        slot.item["arguments"] = text or "{}"  # a call without input streams no JSON at all
        return self._emit(
            "response.function_call_arguments.done",
            item_id=slot.item["id"], output_index=slot.output_index, arguments=text or "{}",
        )  # fmt: skip

    def _open_item(self, item: dict[str, Any]) -> bytes:
        self._open = item
        self._output.append(item)
        shown = {**item, "content": []} if item["type"] == "message" else item
        return self._emit("response.output_item.added", output_index=len(self._output) - 1,
                          item=shown)  # fmt: skip

    def _close_open(self) -> bytes:
        """The open item is done: its blocks stopped, its status set by the stop reason."""
        if self._open is None:
            return b""
        out = b""
        for index in [i for i, slot in self._blocks.items() if slot.item is self._open]:
            out += self._block_stop(index)
        item, self._open = self._open, None  # the open item is always the last one
        item["status"], _ = response_status(self._stop_reason)
        index = len(self._output) - 1
        return out + self._emit("response.output_item.done", output_index=index, item=item)

    def _message_stop(self) -> bytes:
        out = self._close_open()
        status, details = response_status(self._stop_reason)
        usage = responses_usage(self._usage or {})
        out += self._emit(f"response.{status}", response=self._response(status, details, usage))
        self._completed = True
        return out

    def _response(
        self, status: str, details: dict[str, str] | None, usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        return response_object(
            id_=response_id(self._upstream_id),
            created_at=self._created_at,
            model=self._model,
            settings=self._settings,
            status=status,
            incomplete_details=details,
            output=self._output if status != "in_progress" else [],
            usage=usage,
        )

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

    @staticmethod
    def _at(slot: _Block) -> dict[str, Any]:
        return {"item_id": slot.item["id"], "output_index": slot.output_index,
                "content_index": slot.part}  # fmt: skip

    def _emit(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"

    def _error(self, kind: str, code: str, message: str) -> bytes:
        self._failed = True
        error = {"type": kind, "code": code, "message": message, "param": None}
        return self._emit("error", code=code, message=message, param=None, error=error)
