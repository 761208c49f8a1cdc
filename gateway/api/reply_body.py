"""Read a 2xx JSON answer of an upstream: the fields routed on, or why there are none.

A body that is not a JSON object (not JSON, an array, empty) is not an answer: an UpstreamError,
so the client gets a 502 and nothing is charged. An object whose routed fields are unusable
(usage of the wrong type, nested too deep to read) is an answer with unknown usage: None.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from gateway.errors import unreadable_answer

__all__ = ["read_reply"]

T = TypeVar("T")


def read_reply(decoder: msgspec.json.Decoder[T], body: bytes) -> T | None:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError:
        if body.lstrip()[:1] == b"{":
            return None
        raise unreadable_answer(body) from None
    except msgspec.DecodeError:
        raise unreadable_answer(body) from None
    except RecursionError:
        return None
