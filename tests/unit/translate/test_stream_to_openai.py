"""Anthropic event streams become OpenAI chunk streams, whatever the chunking of the input."""

from __future__ import annotations

from functools import partial

import msgspec
import pytest

from gateway.translate.response import anthropic_message_to_openai_chat
from gateway.translate.sse import SSEParser
from gateway.translate.stream_to_openai import AnthropicToOpenAIStream

from .golden import (
    assert_golden_bytes,
    line_ending_variants,
    piece_layouts,
    run,
    sample_bytes,
)
from .sdk import anthropic_message_from_stream, openai_completion_from_stream

CREATED = 1741570283
# (upstream sample, include_usage, golden output)
CASES = [
    ("anthropic_stream_tool_use.sse", True, "anthropic_stream_tool_use.openai.sse"),
    ("anthropic_stream_unicode.sse", False, "anthropic_stream_unicode.openai.sse"),
    ("anthropic_stream_overloaded.sse", True, "anthropic_stream_overloaded.openai.sse"),
]
COMPLETE = CASES[:2]


def translator(include_usage: bool) -> AnthropicToOpenAIStream:
    return AnthropicToOpenAIStream("claude-sonnet", include_usage, created=CREATED)


def chunks(stream: bytes) -> list[object]:
    return [
        "[DONE]" if event.is_done else msgspec.json.decode(event.data)
        for event in SSEParser().feed(stream)
    ]


@pytest.mark.parametrize(("sample", "include_usage", "golden"), CASES)
def test_golden_output(sample: str, include_usage: bool, golden: str) -> None:
    assert_golden_bytes(golden, run(partial(translator, include_usage), [sample_bytes(sample)]))


@pytest.mark.parametrize(("sample", "include_usage", "golden"), CASES)
def test_any_chunking_and_line_ending_gives_the_golden_output(
    sample: str, include_usage: bool, golden: str
) -> None:
    expected = sample_bytes(golden)
    for ending, data in line_ending_variants(sample_bytes(sample)):
        for layout, pieces in piece_layouts(data):
            assert run(partial(translator, include_usage), pieces) == expected, (ending, layout)


@pytest.mark.parametrize(("sample", "include_usage", "golden"), COMPLETE)
def test_cut_anywhere_ends_in_an_error_never_in_done(
    sample: str, include_usage: bool, golden: str
) -> None:
    data, expected = sample_bytes(sample), sample_bytes(golden)
    end = data.index(b"event: message_stop")
    end = data.index(b"\n\n", end) + 2  # the blank line that dispatches message_stop
    for cut in range(len(data) + 1):
        stream = translator(include_usage)
        fed = stream.feed(data[:cut])
        assert expected.startswith(fed), cut  # output is emitted as early as possible, never redone
        tail = stream.finish()
        if cut >= end:
            assert (stream.completed, fed + tail) == (True, expected), cut
            continue
        assert not stream.completed, cut
        assert b"[DONE]" not in fed + tail, cut
        assert chunks(tail) == [
            {
                "error": {
                    "message": "the upstream stream ended before the message was complete",
                    "type": "upstream_error",
                    "param": None,
                    "code": None,
                }
            }
        ], cut
        assert stream.finish() == b"", "the error is sent once"


@pytest.mark.parametrize(("sample", "include_usage", "golden"), COMPLETE)
def test_sdk_assembles_the_same_answer_as_the_non_streamed_translation(
    sample: str, include_usage: bool, golden: str
) -> None:
    upstream = sample_bytes(sample)
    streamed = openai_completion_from_stream(run(partial(translator, True), [upstream]))
    whole = anthropic_message_to_openai_chat(
        anthropic_message_from_stream(upstream), "claude-sonnet", created=CREATED
    )
    assert streamed["id"] == whole["id"]
    assert streamed["usage"] == whole["usage"]
    (streamed_choice,), (whole_choice,) = streamed["choices"], whole["choices"]
    assert streamed_choice["finish_reason"] == whole_choice["finish_reason"]
    streamed_message, whole_message = streamed_choice["message"], whole_choice["message"]
    assert streamed_message.get("content") == whole_message["content"]

    def calls(message: dict[str, object]) -> list[tuple[object, ...]]:
        return [
            (c["id"], c["function"]["name"], msgspec.json.decode(c["function"]["arguments"]))
            for c in message.get("tool_calls", [])  # type: ignore[attr-defined]
        ]

    assert calls(streamed_message) == calls(whole_message)


def test_parallel_tool_calls_keep_distinct_indexes_and_usage_is_reported() -> None:
    stream = translator(include_usage=True)
    output = stream.feed(sample_bytes("anthropic_stream_tool_use.sse"))
    starts = [
        call
        for chunk in chunks(output)
        if isinstance(chunk, dict) and chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
        if "id" in call
    ]
    assert [(call["index"], call["id"]) for call in starts] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6"),
        (1, "toolu_01Ab8bLw2dBWc9cxS3RnD5Qd"),
    ]
    assert stream.completed
    # 472 uncached + 1024 read from cache; 89 output tokens from message_delta.
    assert stream.usage == (1496, 89)
    assert stream.finish() == b""


def test_usage_chunk_only_when_asked() -> None:
    data = sample_bytes("anthropic_stream_tool_use.sse")
    without = chunks(run(partial(translator, False), [data]))
    with_usage = chunks(run(partial(translator, True), [data]))
    assert without[-1] == with_usage[-1] == "[DONE]"
    assert [c for c in with_usage if c not in without] == [
        {
            "id": "chatcmpl-014p7gG3wDgGV9EUtLvnow3U",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "claude-sonnet",
            "choices": [],
            "usage": {
                "prompt_tokens": 1496,
                "completion_tokens": 89,
                "total_tokens": 1585,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        }
    ]


def test_upstream_error_event_becomes_an_error_chunk_and_ends_the_stream() -> None:
    stream = translator(include_usage=True)
    output = stream.feed(sample_bytes("anthropic_stream_overloaded.sse"))
    output += stream.feed(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert chunks(output)[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "service_unavailable",
            "param": None,
            "code": None,
        }
    }
    assert b"[DONE]" not in output
    assert not stream.completed
    assert stream.finish() == b""
    assert stream.usage == (25, 1)


def test_nothing_is_emitted_after_message_stop() -> None:
    stream = translator(include_usage=False)
    stream.feed(sample_bytes("anthropic_stream_unicode.sse"))
    later = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"x"}}\n\n'
    assert stream.feed(later) == b""
    assert stream.finish() == b""


def test_event_that_is_not_json_is_an_error() -> None:
    stream = translator(include_usage=False)
    output = stream.feed(b"event: content_block_delta\ndata: {not json\n\n")
    assert chunks(output) == [
        {
            "error": {
                "message": "the upstream sent an event that is not JSON",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    ]
    assert stream.finish() == b""


def test_usage_is_unknown_before_message_start() -> None:
    stream = translator(include_usage=False)
    assert stream.usage is None
    assert not stream.completed
    assert b"upstream_error" in stream.finish()


def test_an_event_too_long_to_hold_ends_the_stream_with_an_error() -> None:
    stream = AnthropicToOpenAIStream("gpt-4o-mini", True, max_event_bytes=4096)
    line = b'data: {"type":"content_block_delta","delta":{"text":"' + b"x" * 100_000
    output = b"".join(stream.feed(line[i : i + 1000]) for i in range(0, len(line), 1000))
    assert chunks(output) == [
        {
            "error": {
                "message": "the upstream sent an event too large to translate",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    ]
    assert not stream.completed
    assert stream.finish() == b""


def anthropic_events(*events: dict[str, object]) -> bytes:
    return b"".join(
        b"event: " + str(e["type"]).encode() + b"\ndata: " + msgspec.json.encode(e) + b"\n\n"
        for e in events
    )


MESSAGE_START = {
    "type": "message_start",
    "message": {"id": "msg_01T", "type": "message", "role": "assistant", "content": [],
                "model": "claude-up", "usage": {"input_tokens": 12, "output_tokens": 1}},
}  # fmt: skip
TOOL_ONLY = anthropic_events(
    MESSAGE_START,
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
)  # fmt: skip


def deltas(stream: bytes) -> list[object]:
    return [
        c["choices"][0]["delta"] for c in chunks(stream) if isinstance(c, dict) and c["choices"]
    ]


def test_a_tool_call_turn_says_no_text_as_openai_does() -> None:
    """OpenAI's first chunk of a tool-call turn is {role, content: null, tool_calls}; an eager
    `content: ""` would make a client (the AI SDK) emit an empty text part."""
    output = run(partial(translator, False), [TOOL_ONLY])
    first, *rest = deltas(output)
    assert first == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}],
    }  # fmt: skip
    assert all("role" not in d and "content" not in d for d in rest)  # type: ignore[operator]
    message = openai_completion_from_stream(output)["choices"][0]["message"]
    assert "content" not in message  # None: no text, as the non-streamed translation says
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'


def test_a_text_turn_says_the_role_with_its_first_text() -> None:
    output = run(partial(translator, False), [sample_bytes("anthropic_stream_unicode.sse")])
    first, second = deltas(output)[:2]
    assert first == {"role": "assistant", "content": "héllo "}
    assert "role" not in second  # type: ignore[operator]


def test_an_empty_answer_still_says_the_role_before_its_finish_reason() -> None:
    empty = anthropic_events(
        MESSAGE_START,
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 0}},
        {"type": "message_stop"},
    )  # fmt: skip
    output = run(partial(translator, False), [empty])
    assert deltas(output) == [{"role": "assistant", "content": ""}, {}]
    assert chunks(output)[-2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    message = openai_completion_from_stream(output)["choices"][0]["message"]
    assert (message["role"], message.get("content")) == ("assistant", "")


def test_nothing_is_said_before_the_first_delta() -> None:
    """message_start alone sends nothing: the role goes with whatever comes first."""
    stream = translator(include_usage=False)
    assert stream.feed(anthropic_events(MESSAGE_START, {"type": "ping"})) == b""
