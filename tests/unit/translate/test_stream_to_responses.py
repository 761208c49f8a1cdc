"""Anthropic event streams become Responses API event streams, whatever the chunking."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.translate.anthropic_to_responses import (
    anthropic_message_to_response,
    response_settings,
)
from gateway.translate.sse import SSEParser
from gateway.translate.stream_to_responses import AnthropicToResponsesStream

from .golden import (
    assert_golden_bytes,
    line_ending_variants,
    piece_layouts,
    run,
    sample_bytes,
)
from .sdk import anthropic_message_from_stream, response_events, response_from_stream

CREATED = 1741570283
SETTINGS = response_settings({"model": "claude-agent", "input": "Weather?"})
CASES = [
    ("anthropic_stream_tool_use.sse", "anthropic_stream_tool_use.responses.sse"),
    ("anthropic_stream_unicode.sse", "anthropic_stream_unicode.responses.sse"),
    ("anthropic_stream_overloaded.sse", "anthropic_stream_overloaded.responses.sse"),
]
COMPLETE = CASES[:2]
CUT = {
    "type": "error",
    "code": "upstream_cut",
    "message": "the upstream stream ended before the response was complete",
    "param": None,
    "error": {
        "type": "upstream_error",
        "code": "upstream_cut",
        "message": "the upstream stream ended before the response was complete",
        "param": None,
    },
}


def translator(max_event_bytes: int = 8 << 20) -> AnthropicToResponsesStream:
    return AnthropicToResponsesStream(
        "claude-sonnet", SETTINGS, created_at=CREATED, max_event_bytes=max_event_bytes
    )


def events(stream: bytes) -> list[dict[str, Any]]:
    return [msgspec.json.decode(event.data) for event in SSEParser().feed(stream)]


def anthropic(kind: str, **fields: Any) -> bytes:
    data = msgspec.json.encode({"type": kind, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def message_start(input_tokens: int = 9) -> bytes:
    message = {"id": "msg_01X", "type": "message", "role": "assistant", "content": [],
               "usage": {"input_tokens": input_tokens, "output_tokens": 1}}  # fmt: skip
    return anthropic("message_start", message=message)


def block(index: int, content_block: dict[str, Any], *deltas: dict[str, Any]) -> bytes:
    out = anthropic("content_block_start", index=index, content_block=content_block)
    for delta in deltas:
        out += anthropic("content_block_delta", index=index, delta=delta)
    return out + anthropic("content_block_stop", index=index)


def message_end(stop_reason: str, output_tokens: int = 7) -> bytes:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    end = anthropic("message_delta", delta=delta, usage={"output_tokens": output_tokens})
    return end + anthropic("message_stop")


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_golden_output(sample: str, golden: str) -> None:
    assert_golden_bytes(golden, run(translator, [sample_bytes(sample)]))


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_any_chunking_and_line_ending_gives_the_golden_output(sample: str, golden: str) -> None:
    expected = sample_bytes(golden)
    for ending, data in line_ending_variants(sample_bytes(sample)):
        for layout, pieces in piece_layouts(data):
            assert run(translator, pieces) == expected, (ending, layout)


@pytest.mark.parametrize(("sample", "golden"), COMPLETE)
def test_every_event_is_one_the_sdk_knows_numbered_in_order(sample: str, golden: str) -> None:
    parsed = response_events(sample_bytes(golden))
    assert [event.sequence_number for event in parsed] == list(range(len(parsed)))
    assert [e.type for e in parsed[:2]] == ["response.created", "response.in_progress"]
    assert parsed[-1].type == "response.completed"


@pytest.mark.parametrize(("sample", "golden"), COMPLETE)
def test_cut_anywhere_ends_in_an_error_never_in_completed(sample: str, golden: str) -> None:
    data, expected = sample_bytes(sample), sample_bytes(golden)
    end = data.index(b"event: message_stop")
    end = data.index(b"\n\n", end) + 2  # the blank line that dispatches message_stop
    for cut in range(len(data) + 1):
        stream = translator()
        fed = stream.feed(data[:cut])
        assert expected.startswith(fed), cut  # output is emitted as early as possible, never redone
        tail = stream.finish()
        if cut >= end:
            assert (stream.completed, fed + tail) == (True, expected), cut
            continue
        assert not stream.completed, cut
        assert b"response.completed" not in fed + tail, cut
        (error,) = events(tail)
        assert error == {**CUT, "sequence_number": len(events(fed))}, cut
        assert stream.finish() == b"", "the error is sent once"


@pytest.mark.parametrize(("sample", "golden"), COMPLETE)
def test_sdk_assembles_the_same_answer_as_the_non_streamed_translation(
    sample: str, golden: str
) -> None:
    upstream = sample_bytes(sample)
    streamed = response_from_stream(run(translator, [upstream]))
    whole = anthropic_message_to_response(
        anthropic_message_from_stream(upstream), "claude-sonnet", SETTINGS, created_at=CREATED
    )
    for field in ("id", "status", "usage", "model", "created_at"):
        assert streamed[field] == whole[field], field

    def items(output: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (item["type"], item["id"], item["status"], item.get("call_id"),
             item.get("arguments") and msgspec.json.decode(item["arguments"]),
             [part["text"] for part in item.get("content", [])])
            for item in output
        ]  # fmt: skip

    assert items(streamed["output"]) == items(whole["output"])


def test_parallel_tool_calls_stream_their_arguments_and_usage_is_reported() -> None:
    stream = translator()
    output = events(stream.feed(sample_bytes("anthropic_stream_tool_use.sse")))
    calls = [e["item"] for e in output if e["type"] == "response.output_item.added"][1:]
    assert [(c["call_id"], c["name"], c["status"]) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "in_progress"),
        ("toolu_01Ab8bLw2dBWc9cxS3RnD5Qd", "get_weather", "in_progress"),
    ]
    done = [e for e in output if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], msgspec.json.decode(e["arguments"])) for e in done] == [
        (1, {"location": "San Francisco, CA", "unit": "fahrenheit"}),
        (2, {"location": "Tokyo, Japan", "unit": "celsius"}),
    ]
    assert stream.completed
    # 472 uncached + 1024 read from cache; 89 output tokens from message_delta.
    assert stream.usage == (1496, 89)
    assert output[-1]["response"]["usage"]["input_tokens"] == 1496
    assert stream.finish() == b""


def test_a_call_without_input_has_empty_object_arguments() -> None:
    call = {"type": "tool_use", "id": "toolu_9", "name": "now", "input": {}}
    empty = {"type": "input_json_delta", "partial_json": ""}
    output = events(
        run(translator, [message_start(), block(0, call, empty), message_end("tool_use")])
    )
    (done,) = [e for e in output if e["type"] == "response.function_call_arguments.done"]
    assert done["arguments"] == "{}"
    assert output[-1]["response"]["output"][0]["arguments"] == "{}"


def test_max_tokens_ends_in_response_incomplete_with_the_item_incomplete() -> None:
    text = {"type": "text", "text": ""}
    delta = {"type": "text_delta", "text": "Once upon a"}
    stream = translator()
    output = events(
        stream.feed(message_start() + block(0, text, delta) + message_end("max_tokens"))
    )
    item_done = next(e for e in output if e["type"] == "response.output_item.done")
    assert item_done["item"]["status"] == "incomplete"
    final = output[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["usage"]["output_tokens"] == 7
    assert stream.completed and stream.usage == (9, 7)


def test_text_after_a_tool_call_opens_a_new_message_item() -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    text = {"type": "text", "text": "Done"}
    output = events(
        run(translator, [message_start(), block(0, text), block(1, call), block(2, text),
                         message_end("end_turn")])
    )  # fmt: skip
    added = [(e["output_index"], e["item"]["type"]) for e in output
             if e["type"] == "response.output_item.added"]  # fmt: skip
    assert added == [(0, "message"), (1, "function_call"), (2, "message")]
    deltas = [e["delta"] for e in output if e["type"] == "response.output_text.delta"]
    assert deltas == ["Done", "Done"]  # text given in content_block_start is not lost


def test_upstream_error_event_becomes_an_error_event_and_ends_the_stream() -> None:
    stream = translator()
    output = stream.feed(sample_bytes("anthropic_stream_overloaded.sse"))
    output += stream.feed(anthropic("message_stop"))
    error = events(output)[-1]
    assert (error["type"], error["code"], error["message"]) == ("error", "service_unavailable",
                                                                "Overloaded")  # fmt: skip
    assert error["error"]["type"] == "service_unavailable"
    assert b"response.completed" not in output
    assert not stream.completed
    assert stream.finish() == b""
    assert stream.usage == (25, 1)


def test_nothing_is_emitted_after_message_stop() -> None:
    stream = translator()
    stream.feed(sample_bytes("anthropic_stream_unicode.sse"))
    assert stream.feed(block(5, {"type": "text", "text": "x"})) == b""
    assert stream.finish() == b""


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"[" * 100_000])
def test_an_event_that_is_not_a_json_object_is_an_error(data: bytes) -> None:
    stream = translator()
    (error,) = events(stream.feed(b"event: content_block_delta\ndata: " + data + b"\n\n"))
    assert (error["type"], error["code"]) == ("error", "bad_upstream_body")
    assert stream.finish() == b""


def test_an_event_too_large_to_hold_is_an_error() -> None:
    stream = translator(max_event_bytes=400)
    assert len(events(stream.feed(message_start()))) == 2
    huge = {"type": "text_delta", "text": "x" * 1000}
    never_ending = anthropic("content_block_delta", index=0, delta=huge)[:-1]
    (error,) = events(stream.feed(never_ending))
    assert (error["code"], error["sequence_number"]) == ("bad_upstream_body", 2)
    assert not stream.completed and stream.finish() == b""


def test_usage_is_unknown_before_message_start_and_distrusted_when_malformed() -> None:
    stream = translator()
    assert stream.usage is None
    stream.feed(message_start() + anthropic("message_delta", delta={}, usage={"output_tokens": -3}))
    assert stream.usage == (-1, -1)
