"""Golden files under samples/ and ways to feed a stream translator its input in pieces.

Run with KEYWAY_UPDATE_GOLDENS=1 to rewrite the golden files from the current code (then read
the diff: a golden file is only as good as the review it got).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

__all__ = [
    "SAMPLES",
    "StreamTranslator",
    "assert_golden_bytes",
    "assert_golden_json",
    "line_ending_variants",
    "piece_layouts",
    "run",
    "sample_bytes",
    "sample_json",
]

SAMPLES = Path(__file__).parent / "samples"
_UPDATE = os.environ.get("KEYWAY_UPDATE_GOLDENS") == "1"


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample_json(name: str) -> Any:
    return msgspec.json.decode(sample_bytes(name))


def assert_golden_json(name: str, actual: Any) -> None:
    path = SAMPLES / name
    if _UPDATE:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(actual), indent=2) + b"\n")
    assert actual == msgspec.json.decode(path.read_bytes())


def assert_golden_bytes(name: str, actual: bytes) -> None:
    path = SAMPLES / name
    if _UPDATE:
        path.write_bytes(actual)
    expected = path.read_bytes()
    assert actual.decode() == expected.decode()


def run(make: Callable[[], StreamTranslator], pieces: list[bytes]) -> bytes:
    """Feed ``pieces`` to a fresh translator, then finish it; the whole output."""
    translator = make()
    return b"".join(translator.feed(piece) for piece in pieces) + translator.finish()


def piece_layouts(
    data: bytes, *, seed: int = 20240611, random_runs: int = 40
) -> Iterator[tuple[str, list[bytes]]]:
    """``data`` whole, one byte at a time, cut once at every byte, and cut at random places."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield f"cut@{cut}", [data[:cut], data[cut:]]
    rng = random.Random(seed)
    for run_number in range(random_runs):
        pieces, start = [], 0
        while start < len(data):
            size = rng.choice((1, 2, 3, 5, 8, 13, 64, 200))
            pieces.append(data[start : start + size])
            start += size
        yield f"random#{run_number}", pieces


def line_ending_variants(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The same stream with LF, CRLF and lone-CR line endings (the JSON holds no raw newline)."""
    yield "lf", data
    yield "crlf", data.replace(b"\n", b"\r\n")
    yield "cr", data.replace(b"\n", b"\r")
