"""What the fake model says: a deterministic reply, its token counts, and fake tool arguments.

The reply names the last four characters of the upstream key that was used, so a test can
tell which key the gateway chose from the answer alone. One word is one token; the streamed
deltas concatenate to exactly the non-streamed text. A request that asks for structured output
gets instead the smallest JSON document its schema accepts (``schema_value.py``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import os
import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.fake_provider.schema_value import document_for

__all__ = [
    "Reply",
    "ToolAnswer",
    "embedding_vector",
    "encode_embedding",
    "estimate_tokens",
    "json_reply",
    "new_id",
    "text_reply",
    "tool_answer",
]

_encoder = msgspec.json.Encoder()
_FILLER = " more"
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Reply:
    """A text answer: the pieces streamed one per delta, and what they add up to."""

    pieces: tuple[str, ...]
    text: str
    completion_tokens: int
    truncated: bool
    """True when ``max_tokens`` cut the answer short (finish_reason "length")."""


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """A call of one tool: its name, its arguments as JSON text and in streamed pieces."""

    name: str
    arguments: dict[str, Any]
    arguments_json: str
    pieces: tuple[str, ...]
    completion_tokens: int


_replies: dict[tuple[str, int, int | None], Reply] = {}
_PROCESS_TAG = os.urandom(4).hex()
_sequence = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_id(prefix: str) -> str:
    """A unique id such as ``chatcmpl-3f9a01c2000000000000002a`` (no syscall per id)."""
    return f"{prefix}{_PROCESS_TAG}{next(_sequence):016x}"


def estimate_tokens(chars: int) -> int:
    """The fake tokenizer: four characters a token, at least one."""
    return chars // 4 + 1


def _split(items: list[str], parts: int) -> tuple[str, ...]:
    """``items`` joined into ``parts`` non-empty consecutive groups (fewer if there are fewer)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    groups: list[str] = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        groups.append("".join(items[start:end]))
        start = end
    return tuple(groups)


def text_reply(key: str, stream_chunks: int, max_tokens: int | None = None) -> Reply:
    """The answer for ``key``: "Hello from fake provider (key ...abcd)", padded to fill the stream."""
    cache_key = (key[-4:], stream_chunks, max_tokens)
    reply = _replies.get(cache_key)
    if reply is not None:
        return reply
    words = ["Hello", " from", " fake", " provider", " (key", f" ...{key[-4:]})"]
    words.extend([_FILLER] * (stream_chunks - len(words)))
    truncated = max_tokens is not None and max_tokens < len(words)
    if max_tokens is not None:
        words = words[: max(1, max_tokens)]
    pieces = _split(words, stream_chunks)
    reply = Reply(
        pieces=pieces, text="".join(pieces), completion_tokens=len(words), truncated=truncated
    )
    if len(_replies) >= _CACHE_LIMIT:
        _replies.clear()
    _replies[cache_key] = reply
    return reply


def json_reply(schema: Mapping[str, Any], stream_chunks: int) -> Reply:
    """The answer to a request for structured output: a JSON document ``schema`` accepts."""
    text = _encoder.encode(document_for(schema)).decode()
    pieces = _split(list(text), stream_chunks)
    return Reply(
        pieces=pieces, text=text, completion_tokens=estimate_tokens(len(text)), truncated=False
    )


def _fake_value(schema: Mapping[str, Any]) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        return "fake"
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items")
        return [_fake_value(items)] if isinstance(items, Mapping) else []
    if kind == "object":
        return _fake_arguments(schema)
    return None


def _fake_arguments(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    properties = (schema or {}).get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: _fake_value(prop) if isinstance(prop, Mapping) else None
        for name, prop in properties.items()
    }


def tool_answer(name: str, schema: Mapping[str, Any] | None, stream_chunks: int) -> ToolAnswer:
    """A call of tool ``name`` with one plausible value per property of its JSON schema."""
    arguments = _fake_arguments(schema)
    arguments_json = _encoder.encode(arguments).decode()
    chars = list(arguments_json)
    pieces = _split(chars, max(2, stream_chunks))
    return ToolAnswer(
        name=name,
        arguments=arguments,
        arguments_json=arguments_json,
        pieces=pieces,
        completion_tokens=estimate_tokens(len(arguments_json) + len(name)),
    )


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``text`` and ``dimensions``."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_embedding(values: Iterable[float], encoding_format: str) -> list[float] | str:
    """The vector as OpenAI sends it: floats, or base64 of little-endian float32."""
    floats = list(values)
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
    return floats
