"""An asyncio client for what wrk cannot time: time to first token of SSE streams, and samples.

`run_streams` keeps `concurrency` streams going for a while (each worker sends the next request
when its stream ends) and times, for each, the first SSE event and the end of the stream.
`sample_responses` sends a few requests one at a time and keeps their status and Retry-After.
aiohttp on uvloop: the client costs the same whether it talks to Keyway or to the fake provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec
import uvloop

__all__ = ["StreamSample", "chat_body", "run", "run_streams", "sample_responses"]

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


def chat_body(model: str, *, stream: bool) -> bytes:
    """The request every scenario sends (the same bytes as scenarios/chat.lua)."""
    return _encode(
        {"model": model, "messages": [{"role": "user", "content": "Say hi"}], "stream": stream}
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@dataclass(frozen=True, slots=True)
class StreamSample:
    """One stream: its status, when its first event and its end arrived, and its chunk count."""

    status: int
    ok: bool
    ttft_s: float
    total_s: float
    chunks: int


def _headers(auth: str) -> dict[str, str]:
    return {"content-type": "application/json", "authorization": f"Bearer {auth}"}


async def _stream_once(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> StreamSample:
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    done = False
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                elapsed = time.perf_counter() - started
                return StreamSample(response.status, False, elapsed, elapsed, 0)
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                if first is None:
                    first = time.perf_counter()
                if line.startswith(b"data: [DONE]"):
                    done = True
                else:
                    chunks += 1
            status = response.status
    except (TimeoutError, aiohttp.ClientError):
        elapsed = time.perf_counter() - started
        return StreamSample(0, False, elapsed, elapsed, chunks)
    ended = time.perf_counter()
    ttft = (first if first is not None else ended) - started
    return StreamSample(status, done and chunks > 0, ttft, ended - started, chunks)


async def run_streams(
    url: str, auth: str, model: str, *, concurrency: int, duration_s: float
) -> tuple[list[StreamSample], float]:
    """Streams read by `concurrency` workers for `duration_s`; the samples and the time taken."""
    body = chat_body(model, stream=True)
    headers = _headers(auth)
    samples: list[StreamSample] = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                samples.append(await _stream_once(session, url, headers, body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return samples, elapsed


async def sample_responses(
    url: str, auth: str, model: str, count: int
) -> list[tuple[int, str | None]]:
    """`count` non-streaming requests one after the other: (status, Retry-After or None)."""
    body = chat_body(model, stream=False)
    headers = _headers(auth)
    found: list[tuple[int, str | None]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(count):
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                found.append((response.status, response.headers.get("retry-after")))
    return found
