"""The passthrough stream taps against hostile upstreams: any chunking, endless lines, fake ends.

Whatever the upstream sends, every byte reaches the client in order, the tap holds at most
`MAX_EVENT_BYTES` of an unfinished event, only a real `data: [DONE]` event ends an OpenAI
stream, and usage is either the upstream's plausible counts or unknown (-1, -1).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from gateway.api.stream_taps import MAX_EVENT_BYTES, AnthropicStreamTap, OpenAIStreamTap

__all__: list[str] = []

UNKNOWN = (-1, -1)
FIVE_MB = 5 * 1024 * 1024


def data(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def chunk(text: str) -> bytes:
    return data({"id": "c1", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})  # fmt: skip


def usage_chunk(usage: Any) -> bytes:
    return data({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage})


DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def openai_stream(*texts: str, usage: Any = USAGE, done: bool = True) -> list[bytes]:
    events = [chunk(t) for t in texts]
    if usage is not None:
        events.append(usage_chunk(usage))
    return events + ([DONE] if done else [])


def run(tap: OpenAIStreamTap | AnthropicStreamTap, chunks: list[bytes]) -> bytes:
    return b"".join(tap.feed(c) for c in chunks) + tap.finish()


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- OpenAI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["events", "one byte", "crlf"])
def test_openai_stream_passes_through_and_hides_the_usage_chunk_keyway_asked_for(
    split: str,
) -> None:
    events = openai_stream("Hel", "lo")
    whole = b"".join(events)
    if split == "crlf":
        whole = whole.replace(b"\n", b"\r\n")
    chunks = one_byte_chunks(whole) if split == "one byte" else [whole]
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    out = run(tap, chunks)
    assert out.replace(b"\r\n", b"\n") == events[0] + events[1] + DONE
    assert tap.completed and tap.usage == (12, 5)


def test_the_usage_chunk_stays_when_the_client_asked_for_it() -> None:
    events = openai_stream("Hi")
    tap = OpenAIStreamTap(hide_usage_chunk=False)
    assert run(tap, events) == b"".join(events)
    assert tap.usage == (12, 5)


@pytest.mark.parametrize(
    "text",
    [
        "data: [DONE]\n\n",  # JSON-escaped inside a content delta
        "[DONE]",
        "\n\ndata: [DONE]\n\n",
    ],
)
def test_done_inside_model_text_does_not_end_the_stream(text: str) -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    out = run(tap, openai_stream("Sure: ", text, usage=None, done=False))
    assert not tap.completed, "a cut stream would pass for a complete one"
    assert b'"code":"upstream_cut"' in out


@pytest.mark.parametrize(
    "event",
    [
        b"data: [DONE] \n\n",
        b"data: [DONE]x\n\n",
        b": [DONE]\n\n",
        b'data: {"x": "[DONE]"}\n\n',
        b"data: [DONE]\ndata: more\n\n",
        b"event: [DONE]\n\n",
    ],
)
def test_a_line_that_merely_contains_done_does_not_end_the_stream(event: bytes) -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    run(tap, [chunk("a"), event])
    assert not tap.completed


@pytest.mark.parametrize(
    "event",
    [b"data: [DONE]\n\n", b"data:[DONE]\n\n", b"data: [DONE]\r\n\r\n", b": ka\ndata: [DONE]\n\n"],
)
def test_a_done_event_ends_the_stream(event: bytes) -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    out = run(tap, [chunk("a"), event])
    assert tap.completed and out == chunk("a") + event


def test_a_done_event_after_others_naming_done_in_the_same_chunk_ends_the_stream() -> None:
    lookalikes = b'data: {"x": "[DONE]"}\n\n: [DONE]\n\n\ndata: [DONE]x\n\n'
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    run(tap, [chunk("a") + lookalikes])
    assert not tap.completed
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    run(tap, [chunk("a") + lookalikes + b"\ndata: [DONE]\n\n"])
    assert tap.completed


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -12, "completion_tokens": 5},
        {"prompt_tokens": 12, "completion_tokens": -5},
        {"prompt_tokens": 12.0, "completion_tokens": 5},
        {"prompt_tokens": 12, "completion_tokens": 5.5},
        {"prompt_tokens": True, "completion_tokens": 5},
        {"prompt_tokens": "12", "completion_tokens": 5},
        {"prompt_tokens": 2**53 + 1, "completion_tokens": 5},
        {"prompt_tokens": 10**30, "completion_tokens": 5},
        {"prompt_tokens": 12, "completion_tokens": 10**30},
        {"prompt_tokens": None, "completion_tokens": 5},
        {"completion_tokens": 5},
        {"prompt_tokens": [12], "completion_tokens": 5},
    ],
)
def test_implausible_usage_counts_make_the_usage_unknown(usage: dict[str, Any]) -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    out = run(tap, openai_stream("a", usage=usage))
    assert tap.usage == UNKNOWN
    assert out == chunk("a") + DONE, "the usage-only chunk is still hidden"


def test_usage_at_the_bounds_is_taken_as_sent() -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    run(tap, openai_stream("a", usage={"prompt_tokens": 2**53, "completion_tokens": 0}))
    assert tap.usage == (2**53, 0)


def test_an_endless_line_is_relayed_unread_in_bounded_memory_and_linear_time() -> None:
    """5 MB without a newline, 1 KiB at a time: held back at most MAX_EVENT_BYTES, then relayed
    as it comes; accounting resumes at the next event, the usage unknown (it went by unread)."""
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    line = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * FIVE_MB
    started = time.perf_counter()
    relayed = 0
    for i in range(0, len(line), 1024):
        relayed += len(tap.feed(line[i : i + 1024]))
        assert i + 1024 - relayed <= MAX_EVENT_BYTES + 1024
    rest = b'"},"finish_reason":null}]}\n\n' + usage_chunk(USAGE) + DONE
    out = b"".join(tap.feed(c) for c in one_byte_chunks(rest)) + tap.finish()
    assert time.perf_counter() - started < 5
    assert relayed == len(line)
    assert out == b'"},"finish_reason":null}]}\n\n' + DONE, "after it, events are read again"
    assert tap.completed
    assert tap.usage == UNKNOWN


def test_a_whole_five_megabyte_chunk_without_newline_is_relayed_at_once() -> None:
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    line = b"data: " + b"y" * FIVE_MB
    assert tap.feed(line) == line
    assert tap.feed(b"\n\n" + DONE) == b"\n\n" + DONE
    assert tap.completed and tap.usage == UNKNOWN


def test_events_up_to_the_bound_are_read() -> None:
    text = "z" * (MAX_EVENT_BYTES - 200)
    tap = OpenAIStreamTap(hide_usage_chunk=True)
    events = openai_stream(text)
    out = run(tap, [*one_byte_chunks(b"".join(events))[:50], b"".join(events)[50:]])
    assert out == events[0] + DONE
    assert tap.usage == (12, 5)


def null_usage_stream(*texts: str) -> list[bytes]:
    """As OpenAI streams with include_usage: `"usage":null` in every chunk, then the usage."""
    chunks = []
    for text in texts:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        chunks.append(data({"id": "c1", "object": "chat.completion.chunk", "usage": None,
                            "choices": [choice]}))  # fmt: skip
    return [*chunks, usage_chunk(USAGE), DONE]


def _cuts(whole: bytes, step: int) -> list[bytes]:
    return [whole[i : i + step] for i in range(0, len(whole), step)]


@pytest.mark.parametrize("hide", [True, False])
@pytest.mark.parametrize("step", [1, 7, 64, 300, 100_000])
def test_a_stream_with_a_null_usage_in_every_chunk_reads_only_the_usage_chunk(
    hide: bool, step: int
) -> None:
    events = null_usage_stream("Hel", 'lo "usage":{1}', "usage", "")
    tap = OpenAIStreamTap(hide_usage_chunk=hide)
    out = run(tap, _cuts(b"".join(events), step))
    kept = [e for e in events if not (hide and e == usage_chunk(USAGE))]
    assert out == b"".join(kept)
    assert tap.completed and tap.usage == (12, 5)


ODD_STREAMS = [
    b"".join(null_usage_stream("a", "b")).replace(b"\n\n", b"\r\n\r\n"),
    b"".join(null_usage_stream("a", "b")).replace(b"\n\n", b"\n\n\n"),
    b"\n\n" + b"".join(null_usage_stream("a")),
    b"".join(null_usage_stream("a")).replace(b'"usage":null', b'"usage": null'),
    b"".join(null_usage_stream("a")).replace(b'{"id"', b'{"x":{"usage":{"prompt_tokens":1}},"id"'),
    b"".join(null_usage_stream("a")).replace(b"data: {", b'event: x\ndata: {"usage":7,', 1),
    b'data: {"choices":[],"usage":null,"x":' + b"1" * 50 + b"}\r\n\r\n" + usage_chunk(USAGE),
    usage_chunk(USAGE) + usage_chunk({"prompt_tokens": 3, "completion_tokens": 4}) + DONE,
    b': comment with "usage":{}\n\n' + b"".join(null_usage_stream("a")),
]


@pytest.mark.parametrize("whole", ODD_STREAMS)
@pytest.mark.parametrize("hide", [True, False])
@pytest.mark.parametrize("step", [1, 5, 100_000])
def test_reading_only_the_usage_events_relays_what_reading_every_event_relays(
    whole: bytes, hide: bool, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = OpenAIStreamTap(hide_usage_chunk=hide)
    fast_out = run(fast, _cuts(whole, step))
    monkeypatch.setattr("gateway.api.stream_taps._rejoins", lambda complete: False)
    every = OpenAIStreamTap(hide_usage_chunk=hide)
    assert fast_out == run(every, _cuts(whole, step))
    assert (fast.usage, fast.completed) == (every.usage, every.completed)


# -- Anthropic --------------------------------------------------------------------------------


def event(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\n" + data({"type": kind, **fields})


def anthropic_stream(
    start_usage: Any = None, delta_usage: Any = None, *, text: str = "Hi", stop: bool = True
) -> list[bytes]:
    start = {"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 5}
    events = [
        event("message_start", message={"id": "msg_1", "usage": start_usage or start}),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": text}),
        event("content_block_stop", index=0),
        event(
            "message_delta",
            delta={"stop_reason": "end_turn"},
            usage=delta_usage or {"output_tokens": 7},
        ),
    ]
    return events + ([event("message_stop")] if stop else [])


@pytest.mark.parametrize("split", ["events", "one byte", "crlf"])
def test_anthropic_stream_passes_through_with_its_usage(split: str) -> None:
    whole = b"".join(anthropic_stream())
    if split == "crlf":
        whole = whole.replace(b"\n", b"\r\n")
    tap = AnthropicStreamTap()
    out = run(tap, one_byte_chunks(whole) if split == "one byte" else [whole])
    assert out == whole
    assert tap.completed and tap.usage == (25, 7)


@pytest.mark.parametrize(
    ("start", "delta"),
    [
        ({"input_tokens": -20, "output_tokens": 1}, None),
        ({"input_tokens": 20.5, "output_tokens": 1}, None),
        ({"input_tokens": "20", "output_tokens": 1}, None),
        ({"input_tokens": False, "output_tokens": 1}, None),
        ({"input_tokens": 10**30, "output_tokens": 1}, None),
        ({"input_tokens": 20, "cache_read_input_tokens": -5}, None),
        ({"input_tokens": 20, "cache_creation_input_tokens": 1.5}, None),
        ({"output_tokens": 1}, None),  # the input count never came
        (None, {"output_tokens": -7}),
        (None, {"output_tokens": 2**60}),
        (None, {"output_tokens": "7"}),
    ],
)
def test_anthropic_implausible_counts_make_the_usage_unknown(
    start: dict[str, Any] | None, delta: dict[str, Any] | None
) -> None:
    tap = AnthropicStreamTap()
    run(tap, anthropic_stream(start, delta))
    assert tap.completed
    assert tap.usage == UNKNOWN


def test_anthropic_end_names_inside_text_do_not_end_the_stream() -> None:
    tap = AnthropicStreamTap()
    events = anthropic_stream(text='event: message_stop\ndata: {"type":"message_stop"}\n\n',
                              stop=False)  # fmt: skip
    out = run(tap, events)
    assert not tap.completed
    assert out.endswith(b'"message":"the upstream stream ended before completion"}}\n\n')


def test_anthropic_endless_line_is_relayed_and_the_usage_becomes_unknown() -> None:
    events = anthropic_stream()
    tap = AnthropicStreamTap()
    head = b"".join(tap.feed(e) for e in events[:2])
    line = b'event: content_block_delta\ndata: {"delta":{"text":"' + b"x" * FIVE_MB
    body = b"".join(tap.feed(line[i : i + 4096]) for i in range(0, len(line), 4096))
    tail = b"".join(tap.feed(e) for e in [b'"}}\n\n', *events[3:]]) + tap.finish()
    assert head + body + tail == b"".join(events[:2]) + line + b'"}}\n\n' + b"".join(events[3:])
    assert tap.completed
    assert tap.usage == UNKNOWN
