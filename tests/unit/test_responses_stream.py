"""The Responses API stream tap: bytes pass through as they come, usage and the end are read."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.api.responses_stream import ResponsesStreamTap
from gateway.api.responses_wire import parse_responses_usage
from gateway.errors import UpstreamError

USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18,
         "input_tokens_details": {"cached_tokens": 4},
         "output_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip


def event(kind: str, seq: int, *, named: bool = True, **fields: Any) -> bytes:
    data = msgspec.json.encode({"type": kind, "sequence_number": seq, **fields})
    return (b"event: " + kind.encode() + b"\n" if named else b"") + b"data: " + data + b"\n\n"


def stream(end: str = "response.completed", *, named: bool = True) -> list[bytes]:
    response: dict[str, Any] = {"id": "resp_1", "object": "response", "status": "in_progress",
                                "error": None, "usage": None, "output": []}  # fmt: skip
    events = [
        event("response.created", 0, named=named, response=response),
        event("response.output_text.delta", 1, named=named, delta="the word error", item_id="m"),
        event(
            "response.output_text.delta", 2, named=named, delta=" response.completed", item_id="m"
        ),
    ]
    final = {**response, "status": end.removeprefix("response."), "usage": USAGE}
    events.append(event(end, 3, named=named, response=final))
    return events


def run(chunks: list[bytes]) -> tuple[ResponsesStreamTap, bytes]:
    tap = ResponsesStreamTap()
    out = b"".join(tap.feed(chunk) for chunk in chunks) + tap.finish()
    return tap, out


@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("end", ["response.completed", "response.incomplete"])
def test_events_pass_through_unchanged_and_usage_comes_from_the_end(named: bool, end: str) -> None:
    events = stream(end, named=named)
    tap, out = run(events)
    assert out == b"".join(events)
    assert tap.completed and tap.usage == (11, 7)


def test_events_split_anywhere_are_forwarded_whole_and_in_order() -> None:
    whole = b"".join(stream())
    chunks = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    tap = ResponsesStreamTap()
    forwarded = []
    for chunk in chunks:
        out = tap.feed(chunk)
        if out:
            assert out.endswith(b"\n\n"), "only complete events leave the tap"
            forwarded.append(out)
    assert b"".join(forwarded) + tap.finish() == whole
    assert tap.completed and tap.usage == (11, 7)


def test_crlf_line_endings() -> None:
    events = [e.replace(b"\n", b"\r\n") for e in stream()]
    tap, out = run(events)
    assert out == b"".join(events) and tap.completed and tap.usage == (11, 7)


def test_a_last_event_without_its_blank_line_still_ends_the_stream() -> None:
    events = stream()
    events[-1] = events[-1].rstrip(b"\n")
    tap, out = run(events)
    assert tap.completed and tap.usage == (11, 7)
    assert out == b"".join(stream())


def test_a_cut_stream_ends_with_an_error_event_the_sdk_raises_on() -> None:
    events = stream()[:3]
    tap, out = run([*events, b"event: response.compl"])
    assert not tap.completed and tap.usage is None
    assert out.startswith(b"".join(events))
    last = out[len(b"".join(events)) :]
    assert last.startswith(b"event: error\ndata: ") and last.endswith(b"\n\n")
    payload = msgspec.json.decode(last.split(b"data: ", 1)[1])
    assert payload["type"] == "error" and payload["code"] == "upstream_cut"
    assert payload["sequence_number"] == 3 and payload["message"]
    assert payload["error"]["code"] == "upstream_cut"  # nested, as api.openai.com sends it


@pytest.mark.parametrize("failure", ["response.failed", "error"])
def test_an_upstream_failure_is_not_completed_and_gets_no_second_error(failure: str) -> None:
    events = stream()[:3]
    if failure == "error":
        events.append(event("error", 3, code="server_error", message="boom", param=None))
    else:
        failed = {"id": "resp_1", "status": "failed", "usage": USAGE,
                  "error": {"code": "server_error", "message": "boom"}}  # fmt: skip
        events.append(event("response.failed", 3, response=failed))
    tap, out = run(events)
    assert out == b"".join(events)
    assert not tap.completed
    assert tap.usage == ((11, 7) if failure == "response.failed" else None)


def test_json_usage() -> None:
    body = msgspec.json.encode({"id": "resp_1", "object": "response", "usage": USAGE})
    assert parse_responses_usage(body) == (11, 7)
    assert parse_responses_usage(b'{"id": "resp_1", "usage": null}') == (-1, -1)
    with pytest.raises(UpstreamError):
        parse_responses_usage(b"not json")


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": -11, "output_tokens": 7},
        {"input_tokens": 11, "output_tokens": 7.0},
        {"input_tokens": True, "output_tokens": 7},
        {"input_tokens": "11", "output_tokens": 7},
        {"input_tokens": 2**53 + 1, "output_tokens": 7},
        {"output_tokens": 7},
    ],
)
def test_implausible_usage_counts_are_unknown(usage: dict[str, Any]) -> None:
    events = stream()
    final = {"id": "resp_1", "status": "completed", "usage": usage}
    events[-1] = event("response.completed", 3, response=final)
    tap, _out = run(events)
    assert tap.completed and tap.usage == (-1, -1)
    body = msgspec.json.encode({"id": "resp_1", "object": "response", "usage": usage})
    assert parse_responses_usage(body) == (-1, -1)


def test_json_usage_nested_too_deeply_is_unknown() -> None:
    assert parse_responses_usage(b'{"output":' + b"[" * 100_000) == (-1, -1)


@pytest.mark.parametrize("named", [True, False])
def test_an_over_long_terminal_event_is_relayed_unread_and_still_ends_the_stream(
    named: bool,
) -> None:
    events = stream(named=named)
    events[-1] = event("response.completed", 3, named=named,
                       response={"output_text": "x" * 5000, "usage": USAGE})  # fmt: skip
    whole = b"".join(events)
    tap = ResponsesStreamTap(max_event_bytes=1024)
    out = b"".join(tap.feed(whole[i : i + 100]) for i in range(0, len(whole), 100))
    assert out + tap.finish() == whole
    assert tap.completed, "the event's name says it ended the stream"
    assert tap.usage == (-1, -1), "its usage went by unread"


def test_an_endless_event_is_relayed_in_bounded_memory_and_the_stream_is_cut() -> None:
    tap = ResponsesStreamTap(max_event_bytes=4096)
    head = b"".join(stream()[:3])
    line = b'event: response.output_text.delta\ndata: {"delta":"' + b"y" * 1_000_000
    relayed = len(tap.feed(head))
    for i in range(0, len(line), 1000):
        relayed += len(tap.feed(line[i : i + 1000]))
        assert len(head) + i + 1000 - relayed <= 4096 + 1000
    out = tap.finish()
    assert relayed == len(head) + len(line)
    assert not tap.completed and out.startswith(b"event: error\n")
    assert tap.usage == (-1, -1)
