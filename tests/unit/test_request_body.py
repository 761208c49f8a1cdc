"""When a client's bytes must be re-encoded before they go upstream, and decoding them whole."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api.request_body import decode_body, encode_body, needs_reencoding
from gateway.errors import BadRequest

__all__: list[str] = []

CHAT = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


@pytest.mark.parametrize(
    ("body", "ambiguous"),
    [
        (CHAT, False),
        (CHAT.replace(b"hi", "h\u00e9 \u65e5\u672c".encode()), False),
        (CHAT.replace(b"hi", b"h\\u00e9 \\u65e5\\u672c"), False),  # non-ASCII escapes spell no key
        (CHAT.replace(b'"stream"', b'"str\\u0065am"'), True),
        (CHAT.replace(b'"model"', b'"\\u006Dodel"'), True),
        (CHAT.replace(b"hi", b"a\\u0022b"), True),  # a false positive: re-encoded, harmlessly
        (CHAT[:-1] + b',"model":"n"}', True),
        (CHAT[:-1] + b',"stream":false}', True),
        (CHAT[:-1] + b',"stream_options":null,"stream_options":{}}', True),
        (CHAT[:-1] + b',"max_tokens":1,"max_tokens":2}', True),
        (CHAT[:-1] + b',"stream_options":{"include_usage":false,"include_usage":true}}', True),
        (CHAT[:-1] + b',"metadata":{"a":1},"metadata":{"a":2}}', False),  # not routed on
    ],
)
def test_needs_reencoding(body: bytes, ambiguous: bool) -> None:
    assert needs_reencoding(body) is ambiguous


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 100_000, b"not json", b"", b"[1]", b'"text"', b"null"],
)
def test_a_body_that_is_not_a_json_object_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_body(body)
    assert caught.value.code == "invalid_json"


def test_decode_keeps_the_last_duplicate_and_encode_writes_it_once() -> None:
    doc = decode_body(b'{"model":"a","model":"b"}')
    assert doc == {"model": "b"}
    assert encode_body(doc) == b'{"model":"b"}'


def test_encoding_a_document_nested_too_deeply_is_a_bad_request() -> None:
    doc: Any = []
    for _ in range(10_000):
        doc = [doc]
    with pytest.raises(BadRequest):
        encode_body({"messages": doc})
