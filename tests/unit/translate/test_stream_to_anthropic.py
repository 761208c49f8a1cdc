"""OpenAI chunk streams become Anthropic event streams, whatever the chunking of the input."""

from __future__ import annotations

import msgspec
import pytest

from gateway.translate.response import openai_chat_to_anthropic_message
from gateway.translate.sse import SSEParser
from gateway.translate.stream_to_anthropic import OpenAIToAnthropicStream

from .golden import assert_golden_bytes, line_ending_variants, piece_layouts, run, sample_bytes
from .sdk import anthropic_message_from_stream, openai_completion_from_stream

CASES = [
    ("openai_stream_tool_calls.sse", "openai_stream_tool_calls.anthropic.sse"),
    ("openai_stream_unicode.sse", "openai_stream_unicode.anthropic.sse"),
    ("openai_stream_interleaved.sse", "openai_stream_interleaved.anthropic.sse"),
]
CUT_ERROR = {
    "type": "error",
    "error": {
        "type": "api_error",
        "message": "the upstream stream ended before the message was complete",
    },
}


def translator() -> OpenAIToAnthropicStream:
    return OpenAIToAnthropicStream("gpt-4o")


def events(stream: bytes) -> list[tuple[str, object]]:
    return [(event.event, msgspec.json.decode(event.data)) for event in SSEParser().feed(stream)]


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_golden_output(sample: str, golden: str) -> None:
    assert_golden_bytes(golden, run(translator, [sample_bytes(sample)]))


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_any_chunking_and_line_ending_gives_the_golden_output(sample: str, golden: str) -> None:
    expected = sample_bytes(golden)
    for ending, data in line_ending_variants(sample_bytes(sample)):
        for layout, pieces in piece_layouts(data):
            assert run(translator, pieces) == expected, (ending, layout)


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_cut_anywhere_ends_in_an_error_never_in_message_stop(sample: str, golden: str) -> None:
    data, expected = sample_bytes(sample), sample_bytes(golden)
    end = data.index(b"data: [DONE]\n\n") + len(b"data: [DONE]\n\n")
    for cut in range(len(data) + 1):
        stream = translator()
        fed = stream.feed(data[:cut])
        assert expected.startswith(fed), cut
        tail = stream.finish()
        if cut >= end:
            assert (stream.completed, fed + tail) == (True, expected), cut
            continue
        assert not stream.completed, cut
        assert b"message_stop" not in fed + tail, cut
        assert events(tail) == [("error", CUT_ERROR)], cut
        assert stream.finish() == b""


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_blocks_are_well_formed(sample: str, golden: str) -> None:
    """Each block starts, takes deltas, and stops before the next starts; indexes count up."""
    open_block, started = None, 0
    for name, data in events(sample_bytes(golden)):
        assert isinstance(data, dict)
        if name == "content_block_start":
            assert (open_block, data["index"]) == (None, started)
            open_block, started = data["index"], started + 1
        elif name == "content_block_delta":
            assert data["index"] == open_block
        elif name == "content_block_stop":
            assert data["index"] == open_block
            open_block = None
        elif name in ("message_delta", "message_stop"):
            assert open_block is None


@pytest.mark.parametrize(("sample", "golden"), CASES)
def test_sdk_assembles_the_same_answer_as_the_non_streamed_translation(
    sample: str, golden: str
) -> None:
    upstream = sample_bytes(sample)
    streamed = anthropic_message_from_stream(run(translator, [upstream]))
    whole = openai_chat_to_anthropic_message(openai_completion_from_stream(upstream), "gpt-4o")
    for field in ("id", "model", "role", "stop_reason", "content"):
        assert streamed[field] == whole[field], field
    if b'"usage":{' in upstream:
        assert streamed["usage"] == whole["usage"]


def test_interleaved_tool_arguments_stay_with_their_call() -> None:
    message = anthropic_message_from_stream(
        run(translator, [sample_bytes("openai_stream_interleaved.sse")])
    )
    assert message["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_paris", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_tokyo", "name": "get_weather", "input": {"city": "東京"}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_first_tool_call_streams_live() -> None:
    data = sample_bytes("openai_stream_tool_calls.sse")
    stream = translator()
    first_three = b"".join(frame + b"\n\n" for frame in data.split(b"\n\n")[:3])
    assert [name for name, _ in events(stream.feed(first_three))] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]


def test_usage_and_completion() -> None:
    stream = translator()
    output = stream.feed(sample_bytes("openai_stream_unicode.sse"))
    assert stream.completed
    assert stream.usage == (1300, 9)
    name, delta = events(output)[-2]
    assert (name, delta) == (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 276,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1024,
                "output_tokens": 9,
            },
        },
    )
    assert stream.finish() == b""


def test_upstream_error_chunk_becomes_an_error_event() -> None:
    stream = translator()
    first = sample_bytes("openai_stream_unicode.sse").split(b"\n\n")[1] + b"\n\n"
    output = stream.feed(first)
    output += stream.feed(
        b'data: {"error":{"message":"The server had an error while processing your request.",'
        b'"type":"server_error","param":null,"code":null}}\n\n'
    )
    assert events(output)[-1] == (
        "error",
        {
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "The server had an error while processing your request.",
            },
        },
    )
    assert stream.feed(b"data: [DONE]\n\n") == b""
    assert not stream.completed
    assert stream.finish() == b""


def test_refusal_becomes_text_with_stop_reason_refusal() -> None:
    chunk = {
        "id": "chatcmpl-r",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "delta": {"refusal": "I can't help with that."}, "finish_reason": None}
        ],
    }
    final = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    body = b"".join(b"data: " + msgspec.json.encode(c) + b"\n\n" for c in (chunk, final))
    message = anthropic_message_from_stream(run(translator, [body + b"data: [DONE]\n\n"]))
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"
    assert message["id"] == "msg_r"


def test_azure_prompt_filter_chunk_does_not_start_the_message() -> None:
    filters = (
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
        b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
    )
    body = sample_bytes("openai_stream_unicode.sse")
    assert run(translator, [filters + body]) == sample_bytes("openai_stream_unicode.anthropic.sse")


def test_done_without_any_chunk_still_gives_a_complete_empty_message() -> None:
    message = anthropic_message_from_stream(run(translator, [b"data: [DONE]\n\n"]))
    assert (message["content"], message["stop_reason"]) == ([], "end_turn")


def test_an_event_too_long_to_hold_ends_the_stream_with_an_error() -> None:
    stream = OpenAIToAnthropicStream("claude", max_event_bytes=4096)
    line = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 100_000
    output = b"".join(stream.feed(line[i : i + 1000]) for i in range(0, len(line), 1000))
    assert events(output) == [
        (
            "error",
            {
                "type": "error",
                "error": {
                    "type": "api_error",
                    "message": "the upstream sent an event too large to translate",
                },
            },
        )
    ]
    assert not stream.completed
    assert stream.finish() == b""


def test_message_start_reports_the_prompt_estimate_and_the_end_the_real_counts() -> None:
    """OpenAI counts tokens only at the end; message_start carries the estimate it was given
    (Anthropic's own reports the prompt there), message_delta the upstream's counts."""
    stream = OpenAIToAnthropicStream("gpt-4o", input_tokens=321)
    output = stream.feed(sample_bytes("openai_stream_unicode.sse")) + stream.finish()
    (name, start), *_ = events(output)
    assert name == "message_start"
    assert start["message"]["usage"] == {"input_tokens": 321, "output_tokens": 0}  # type: ignore[index]
    usage = anthropic_message_from_stream(output)["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (276, 9)
