"""The SSE parser survives any chunking; the encoders write what the SDKs read."""

from __future__ import annotations

import time

import pytest
from anthropic._streaming import SSEDecoder as AnthropicSDKDecoder

from gateway.translate.sse import (
    OPENAI_DONE,
    SSEEvent,
    SSEParser,
    encode_anthropic_event,
    encode_openai_chunk,
)

from .golden import line_ending_variants, piece_layouts, sample_bytes

STREAM_SAMPLES = [
    "anthropic_stream_tool_use.sse",
    "anthropic_stream_unicode.sse",
    "anthropic_stream_overloaded.sse",
    "openai_stream_tool_calls.sse",
    "openai_stream_unicode.sse",
    "openai_stream_interleaved.sse",
]


def parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for piece in pieces for event in parser.feed(piece)]


def test_fields_comments_and_defaults() -> None:
    stream = (
        b": ping\n"
        b"event: message_start\n"
        b'data: {"a":1}\n'
        b"\n"
        b"data: first line\n"
        b"data:second line\n"
        b"id: 7\n"
        b"retry: 100\n"
        b"unknown: ignored\n"
        b"\n"
        b"event: lonely\n"  # no data: never dispatched, and its name does not leak onward
        b"\n"
        b"data\n"  # a field name alone: empty data, still an event
        b"\n"
        b"data:  two spaces\n"  # only the first space after the colon is dropped
        b"\n"
        b"data: [DONE]\n"
        b"\n"
        b"data: cut off before its blank line\n"
    )
    events = parse([stream])
    assert events == [
        SSEEvent("message_start", '{"a":1}'),
        SSEEvent("message", "first line\nsecond line"),
        SSEEvent("message", ""),
        SSEEvent("message", " two spaces"),
        SSEEvent("message", "[DONE]"),
    ]
    assert [event.is_done for event in events] == [False, False, False, False, True]


def test_byte_order_mark_is_dropped_only_at_the_start() -> None:
    # A BOM split across chunks is still the stream's BOM; a later one makes an unknown field.
    assert parse([b"\xef\xbb", b"\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n"]) == [
        SSEEvent("message", "x")
    ]


@pytest.mark.parametrize("text", ["héllo 世界 👋", "👋👋", "é"])
def test_split_inside_a_multibyte_character(text: str) -> None:
    stream = f"event: t\ndata: {text}\n\n".encode()
    for name, pieces in piece_layouts(stream, random_runs=5):
        assert parse(pieces) == [SSEEvent("t", text)], name


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    assert parse([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
    ]
    # A lone CR is a line end too: the LF opening the next line is not swallowed twice.
    assert parse([b"data: a\r", b"\r", b"\ndata: b\n\n"]) == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
    ]


@pytest.mark.parametrize("name", STREAM_SAMPLES)
def test_samples_parse_the_same_under_any_chunking_and_line_ending(name: str) -> None:
    expected = parse([sample_bytes(name)])
    assert expected, "the sample holds events"
    for ending, data in line_ending_variants(sample_bytes(name)):
        for layout, pieces in piece_layouts(data, random_runs=10):
            assert parse(pieces) == expected, (ending, layout)


@pytest.mark.parametrize("name", STREAM_SAMPLES)
def test_parser_agrees_with_the_anthropic_sdk_decoder(name: str) -> None:
    data = sample_bytes(name)
    reference = [
        SSEEvent(sse.event or "message", sse.data)
        for sse in AnthropicSDKDecoder().iter_bytes(iter([data]))
    ]
    assert parse([data]) == reference


def test_encoders_write_exact_frames() -> None:
    chunk = {"id": "chatcmpl-1", "choices": [{"delta": {"content": "héllo\n世界"}}]}
    assert encode_openai_chunk(chunk) == (
        'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"héllo\\n世界"}}]}\n\n'.encode()
    )
    assert encode_anthropic_event("ping", {"type": "ping"}) == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
    )
    assert OPENAI_DONE == b"data: [DONE]\n\n"


def test_encoded_frames_parse_back() -> None:
    frames = encode_anthropic_event("message_stop", {"type": "message_stop"}) + encode_openai_chunk(
        {"x": "a\nb"}
    )
    assert parse([frames]) == [
        SSEEvent("message_stop", '{"type":"message_stop"}'),
        SSEEvent("message", '{"x":"a\\nb"}'),
    ]


def test_an_endless_line_costs_linear_time_and_stops_the_parser_at_the_limit() -> None:
    parser = SSEParser(max_event_bytes=1 << 20)
    assert parser.feed(b'data: {"a":1}\n\n') == [SSEEvent("message", '{"a":1}')]
    line = b"data: " + b"x" * (5 << 20)
    started = time.perf_counter()
    for i in range(0, len(line), 1024):
        assert parser.feed(line[i : i + 1024]) == []
    assert time.perf_counter() - started < 5
    assert parser.overflowed
    assert len(parser._pending) == 0, "nothing is held past the limit"
    assert parser.feed(b"\n\ndata: later\n\n") == []


def test_endless_data_lines_without_a_blank_line_stop_the_parser() -> None:
    parser = SSEParser(max_event_bytes=10_000)
    for _ in range(1000):
        assert parser.feed(b"data: 0123456789abcdef\n") == []
    assert parser.overflowed


def test_a_long_event_within_the_limit_is_parsed_under_one_byte_chunks() -> None:
    stream = b"data: " + b"y" * 50_000 + b"\r\n\r\n"
    parser = SSEParser(max_event_bytes=60_000)
    events = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert events == [SSEEvent("message", "y" * 50_000)]
    assert not parser.overflowed
