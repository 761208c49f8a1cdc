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

__all__ = ["decode_body", "encode_body", "needs_reencoding"]

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


def needs_reencoding(body: bytes) -> bool:
    """Whether the bytes of `body` may say something else than its decoded head.

    True for a key spelled with an escape, or a routed key that may appear twice (a string value
    equal to the key's name gives a false positive, which only costs a re-encoding).
    """
    if _ASCII_ESCAPE.search(body) is not None:
        return True
    return any(body.count(key) > 1 for key in _ROUTED_KEYS)


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
