"""The wire heads of the three request dialects and the usage of their answers, under hostile input.

A client body that cannot be decoded is a BadRequest (a 400 in the caller's dialect), however
it is malformed; an upstream's usage is charged only when its counts are plausible integers,
else it is unknown (-1, -1) and the estimate stays charged. Nothing here may raise otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from gateway.api.anthropic_wire import (
    CountTokensHead,
    MessagesHead,
    decode_messages_head,
    parse_anthropic_usage,
)
from gateway.api.openai_wire import (
    ChatHead,
    CompletionHead,
    EmbeddingHead,
    decode_head,
    parse_usage,
    splice_include_usage,
    with_model,
)
from gateway.api.responses_wire import decode_responses_head, parse_responses_usage
from gateway.errors import BadRequest, UpstreamError

__all__: list[str] = []

UNKNOWN = (-1, -1)
DEEP_ARRAY = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000


def deep_in(field: str, nested: bytes) -> bytes:
    return b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"%s":%s}' % (
        field.encode(),
        nested,
    )


MALFORMED_BODIES = [
    pytest.param(DEEP_ARRAY, id="array-100k-deep"),
    pytest.param(DEEP_OBJECT, id="object-100k-deep"),
    pytest.param(deep_in("metadata", DEEP_ARRAY), id="deep-unknown-field"),
    pytest.param(deep_in("messages", b"[" + DEEP_OBJECT), id="deep-messages"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[]", id="array"),
    pytest.param(
        b'{"model": "m", "max_tokens": 1e400, "max_output_tokens": 1e400}', id="huge-number"
    ),
]


@pytest.mark.parametrize("body", MALFORMED_BODIES)
@pytest.mark.parametrize("head", [ChatHead, CompletionHead, EmbeddingHead])
def test_openai_heads_refuse_malformed_bodies_with_a_bad_request(
    body: bytes, head: type[Any]
) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_head(body, head)
    assert caught.value.status == 400


@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_responses_head_refuses_malformed_bodies_with_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_responses_head(body)


@pytest.mark.parametrize("body", MALFORMED_BODIES)
@pytest.mark.parametrize("head", [MessagesHead, CountTokensHead])
def test_anthropic_heads_refuse_malformed_bodies_with_a_bad_request(
    body: bytes, head: type[Any]
) -> None:
    with pytest.raises(BadRequest):
        decode_messages_head(body, head)


# -- usage of upstream answers ----------------------------------------------------------------

BAD_COUNTS: list[Any] = [-1, -(2**40), 12.0, 12.5, True, False, "12", [12], {"n": 12},
                         2**53 + 1, 10**30]  # fmt: skip


def openai_reply(usage: Any) -> bytes:
    return msgspec.json.encode({"id": "chatcmpl-1", "choices": [], "usage": usage})


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}, (12, 5)),
        ({"prompt_tokens": 8, "total_tokens": 8}, (8, 0)),  # embeddings: no completion
        ({"prompt_tokens": 8, "completion_tokens": None}, (8, 0)),
        ({"prompt_tokens": 0, "completion_tokens": 0}, (0, 0)),
        ({"prompt_tokens": 2**53, "completion_tokens": 1}, (2**53, 1)),
        ({"completion_tokens": 5}, UNKNOWN),
        ({"prompt_tokens": None, "completion_tokens": 5}, UNKNOWN),
        ({}, UNKNOWN),
        (None, UNKNOWN),
        (17, UNKNOWN),
        ("17", UNKNOWN),
        *[({"prompt_tokens": bad, "completion_tokens": 5}, UNKNOWN) for bad in BAD_COUNTS],
        *[({"prompt_tokens": 12, "completion_tokens": bad}, UNKNOWN) for bad in BAD_COUNTS],
    ],
)
def test_openai_usage(usage: Any, expected: tuple[int, int]) -> None:
    assert parse_usage(openai_reply(usage)) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"usage": {"prompt_tokens": 1e400, "completion_tokens": 1}}',
        b'{"usage": {"prompt_tokens": 1' + b"0" * 5000 + b', "completion_tokens": 1}}',
        b'{"choices": ' + DEEP_ARRAY,
        b'{"usage": {"prompt_tokens": 1, "x": ' + DEEP_OBJECT,
    ],
)
def test_unreadable_answers_have_unknown_usage(body: bytes) -> None:
    assert parse_usage(body) == UNKNOWN
    assert parse_anthropic_usage(body) == UNKNOWN
    assert parse_responses_usage(body) == UNKNOWN


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"', b"<html>502</html>"])
def test_a_body_that_is_not_a_json_object_is_not_an_answer(body: bytes) -> None:
    for parse in (parse_usage, parse_anthropic_usage, parse_responses_usage):
        with pytest.raises(UpstreamError) as raised:
            parse(body)
        assert raised.value.code == "bad_upstream_body"


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 20, "output_tokens": 7}, (20, 7)),
        (
            {
                "input_tokens": 20,
                "output_tokens": 7,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 3,
            },
            (28, 7),
        ),
        ({"input_tokens": 20, "cache_read_input_tokens": None}, (20, 0)),
        ({"output_tokens": 7}, UNKNOWN),
        ({"input_tokens": 2**53, "cache_read_input_tokens": 2**53}, (2**53, 0)),
        *[({"input_tokens": bad, "output_tokens": 7}, UNKNOWN) for bad in BAD_COUNTS],
        *[({"input_tokens": 20, "output_tokens": bad}, UNKNOWN) for bad in BAD_COUNTS],
        *[({"input_tokens": 20, "cache_read_input_tokens": bad}, UNKNOWN) for bad in BAD_COUNTS],
        *[
            ({"input_tokens": 20, "cache_creation_input_tokens": bad}, UNKNOWN)
            for bad in BAD_COUNTS
        ],
    ],
)
def test_anthropic_usage(usage: Any, expected: tuple[int, int]) -> None:
    body = msgspec.json.encode({"id": "msg_1", "type": "message", "content": [], "usage": usage})
    assert parse_anthropic_usage(body) == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}, (11, 7)),
        ({"output_tokens": 7}, UNKNOWN),
        *[({"input_tokens": bad, "output_tokens": 7}, UNKNOWN) for bad in BAD_COUNTS],
        *[({"input_tokens": 11, "output_tokens": bad}, UNKNOWN) for bad in BAD_COUNTS],
    ],
)
def test_responses_usage(usage: Any, expected: tuple[int, int]) -> None:
    body = msgspec.json.encode({"id": "resp_1", "object": "response", "usage": usage})
    assert parse_responses_usage(body) == expected


# -- asking the upstream for the usage chunk ---------------------------------------------------


def pairs(body: bytes) -> list[tuple[str, Any]]:
    """The top-level keys of `body` as the upstream's parser sees them, duplicates included."""
    found: list[list[tuple[str, Any]]] = []

    def hook(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append(items)
        return dict(items)

    json.loads(body, object_pairs_hook=hook)
    return found[-1]


def stream_options(body: bytes) -> list[Any]:
    return [value for key, value in pairs(body) if key == "stream_options"]


CHAT = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true'


@pytest.mark.parametrize(
    "body",
    [
        CHAT + b"}",
        CHAT + b',"stream_options":null}',
        CHAT + b',"stream\\u005foptions":null}',
        CHAT + b',"\\u0073tream_options":null}',
        CHAT + b',"stream\\u005Foptions":{"include_usage":false},"stream_options":null}',
        CHAT + b',"stream_options":{"include_usage":true},"stream_options":null}',
        b'{"stream_options":{"include_usage":true},' + CHAT[1:] + b',"stream_options":null}',
    ],
)
def test_the_usage_option_reaches_the_upstream_once_however_the_key_is_spelled(
    body: bytes,
) -> None:
    head = decode_head(body, ChatHead)
    assert head.stream_options is None, "Keyway's reading: no usage asked for"
    spliced = splice_include_usage(body)
    assert stream_options(spliced) == [{"include_usage": True}]
    assert json.loads(spliced)["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body",
    [
        CHAT + b',"stream\\u005foptions":{"include_usage":false}}',
        CHAT + b',"stream_options":{"include_usage":false},"stream\\u005foptions":{"x":1}}',
    ],
)
def test_a_renamed_model_gets_the_usage_option_once(body: bytes) -> None:
    out = with_model(body, "gpt-4o", include_usage=True)
    assert stream_options(out)[0]["include_usage"] is True
    assert len(stream_options(out)) == 1
    assert json.loads(out)["model"] == "gpt-4o"


def test_a_duplicate_model_key_is_re_encoded_with_the_one_keyway_routed_on() -> None:
    body = b'{"model":"expensive","model":"cheap","messages":[1],"stream":true}'
    assert decode_head(body, ChatHead).model == "cheap"
    out = splice_include_usage(body)
    assert [v for k, v in pairs(out) if k == "model"] == ["cheap"]


def test_rewriting_a_body_nested_too_deeply_is_a_bad_request() -> None:
    body = CHAT + b',"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(BadRequest):
        with_model(body, "gpt-4o", include_usage=True)
    with pytest.raises(BadRequest):
        splice_include_usage(body.replace(b'"stream":true', b'"stream_options":null'))
