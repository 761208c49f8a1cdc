"""A client's JSON body decoded whole, for the requests Keyway must rewrite: any failure is a 400.

Most bodies go upstream as the client's bytes; only the routed fields are decoded (the heads in
`*_wire.py`). A body is decoded whole when it is rewritten (another model name, the usage
option, a translation), and re-encoded when its bytes could mean something else to the upstream
than to Keyway: JSON lets a key be spelled with escapes (`"stream\\u005foptions"`) and be given
twice, and parsers disagree on which duplicate wins. Keyway's decoder keeps the last one; the
re-encoded body holds exactly what Keyway routed and charged for.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.errors import BadRequest

__all__ = ["decode_body", "encode_body", "needs_reencoding", "rename_model"]

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# only an escape of an ASCII character can spell a key: `\u00e9` (written by clients that escape
# all non-ASCII text) cannot, so such bodies keep the cheap path
_ASCII_ESCAPE = re.compile(rb"\\u00[0-7]")
_ROUTED_KEYS = (
    b'"model"', b'"stream"', b'"stream_options"', b'"include_usage"', b'"max_tokens"',
    b'"max_completion_tokens"', b'"max_output_tokens"',
)  # fmt: skip
"""The routed keys as they appear in the body's bytes; seen twice, one may be a duplicate key."""
_JSON_SPACE = b" \t\r\n"


def needs_reencoding(body: bytes) -> bool:
    """Whether the bytes of `body` may say something else than its decoded head.

    True for a key spelled with an escape, or a routed key that may appear twice (a string value
    equal to the key's name gives a false positive, which only costs a re-encoding).
    """
    if _ASCII_ESCAPE.search(body) is not None:
        return True
    return any(body.count(key) > 1 for key in _ROUTED_KEYS)


def rename_model(body: bytes, alias: str, model: str) -> bytes | None:
    """`body` with the value of its `"model"` key, `alias`, replaced by `model`; None if unsure.

    Only for a body whose head was decoded (valid JSON, a top-level string `model` equal to
    `alias`): when its bytes hold `"model"` once and spell no key with an escape, that one is
    the top-level key, and when its value is `alias` written without escapes, the value is
    replaced where it stands. The rest goes upstream exactly as the client wrote it, as the
    re-encoding it saves would have said it. Otherwise None: decode and re-encode.
    """
    if body.count(b'"model"') != 1 or _ASCII_ESCAPE.search(body) is not None:
        return None
    at = body.index(b'"model"') + 7
    end = len(body)
    while at < end and body[at] in _JSON_SPACE:
        at += 1
    if body[at : at + 1] != b":":
        return None
    at += 1
    while at < end and body[at] in _JSON_SPACE:
        at += 1
    try:
        value = b'"' + alias.encode() + b'"'
    except UnicodeEncodeError:  # a lone surrogate: only an escape could have spelled it
        return None
    if not body.startswith(value, at):
        return None
    return body[:at] + _encoder.encode(model) + body[at + len(value) :]


def decode_body(body: bytes) -> dict[str, Any]:
    """The whole JSON object of `body`; BadRequest when it is not one or is nested too deeply."""
    try:
        doc = _decoder.decode(body)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", code="invalid_json") from None
    except msgspec.DecodeError:
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return doc


def encode_body(doc: Any) -> bytes:
    """`doc` as JSON; BadRequest when it is nested too deeply to encode."""
    try:
        return _encoder.encode(doc)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", code="invalid_json") from None
