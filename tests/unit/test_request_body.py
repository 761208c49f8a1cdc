"""When a client's bytes must be re-encoded before they go upstream, and decoding them whole."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api.request_body import decode_body, encode_body, needs_reencoding, rename_model
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


@pytest.mark.parametrize(
    "body",
    [
        CHAT,
        b'{ "messages" : [{"role":"user","content":"h\xc3\xa9"}],\n  "model" :\t"m" , "n":1.50}',
        CHAT.replace(b"hi", b"h\\u00e9 \\n"),  # escapes that spell no key
        CHAT.replace(b'"m"', '"m\u00e9"'.encode()),  # a non-ASCII alias, as written
    ],
)
def test_a_model_name_is_spliced_into_the_clients_bytes(body: bytes) -> None:
    alias = decode_body(body)["model"]
    renamed = rename_model(body, alias, 'up/"model"-\u00e9')
    assert renamed is not None
    assert decode_body(renamed) == {**decode_body(body), "model": 'up/"model"-\u00e9'}
    before, after = body.split(b'"model"')
    assert renamed.startswith(before + b'"model"')  # the rest is the client's bytes
    assert renamed.endswith(after[after.index(b'"', after.index(b'"') + 1) + 1 :])


@pytest.mark.parametrize(
    "body",
    [
        CHAT.replace(b"hi", b"the model"),  # fine: one "model" (the text has no quotes around it)
        CHAT.replace(b"hi", b'\\"model\\"'),  # an escaped quote is no key either
    ],
)
def test_text_that_mentions_the_model_does_not_stop_the_splice(body: bytes) -> None:
    renamed = rename_model(body, "m", "up")
    assert renamed is not None and decode_body(renamed)["model"] == "up"


@pytest.mark.parametrize(
    "body",
    [
        CHAT.replace(b'"hi"', b'"model"'),  # "model" twice: a value spelled like the key
        CHAT[:-1] + b',"metadata":{"model":"x"}}',  # a nested "model" key
        CHAT.replace(b'"model"', b'"\\u006dodel"'),  # the key spelled with an escape
        CHAT.replace(b'"m"', b'"m\\u00e9"'),  # the value spelled with an escape
        CHAT.replace(b"hi", b"\\u0041"),  # any ASCII escape: re-encoded, harmlessly
    ],
)
def test_a_model_name_is_not_spliced_when_the_bytes_are_ambiguous(body: bytes) -> None:
    assert rename_model(body, decode_body(body)["model"], "up") is None
