"""One owner per request, on real processes: whatever the upstream answers, and however long it
streams, a request gives back every lease and admission it took, once (gateway/routing/owner.py).

Each test reads the shared state straight from Redis (layout: gateway/state/layout.py, the
headers of lua/acquire.lua, lua/client_admit.lua and lua/lib/usage.lua).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from tests.harness import FakeControl, Proc, make_config, start_gateway

KEY_SECRET = "sk-fake-test-0001"
"""The one upstream key of every test here (k1 of make_config's pool "fake")."""
MODEL = "gpt-4o-mini"
CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 16,
}
STREAMED = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
FIRST_WORDS = "Hello from fake provider (key ...0001)"
"""The fake provider's answer starts so for key k1 (gateway/fake_provider/reply.py)."""


def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """True once `check()` is; settlements run in the background, just after the answer."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _sse_data(text: str) -> list[Any]:
    """The `data:` payloads of an OpenAI stream, `[DONE]` kept as the string."""
    payloads: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            payloads.append(data if data == "[DONE]" else msgspec.json.decode(data))
    return payloads


def _streamed_text(payloads: list[Any]) -> str:
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in payloads[:-1]
        if chunk["choices"]
    )


class PoolState:
    """What Redis holds for the pool `fake` and its key k1."""

    def __init__(self, r: redis.Redis, prefix: str) -> None:
        self.r = r
        self.pool = f"{prefix}:{{pool:fake}}"

    def in_flight(self) -> int:
        return int(self.r.hget(f"{self.pool}:k:k1", "infl") or 0)

    def leases(self) -> int:
        """Leases held: ids in the expiry zset the sweep reads."""
        return int(self.r.zcard(f"{self.pool}:leases"))

    def released(self) -> bool:
        """No request in flight on k1, no lease left (nor its record)."""
        return (
            self.in_flight() == 0 and self.leases() == 0 and self.r.hlen(f"{self.pool}:lease") == 0
        )

    def describe(self) -> str:
        return (
            f"infl={self.r.hget(f'{self.pool}:k:k1', 'infl')!r} "
            f"leases={self.r.zrange(f'{self.pool}:leases', 0, -1, withscores=True)!r} "
            f"lease records={self.r.hgetall(f'{self.pool}:lease')!r}"
        )


def _hourly_usage(r: redis.Redis, prefix: str, field: str) -> int:
    """`field` summed over every hour bucket under `prefix` (lib/usage.lua's `<U>:u:h:<hour>`)."""
    return sum(int(r.hget(key, field) or 0) for key in r.scan_iter(match=f"{prefix}:u:h:*"))


def _start(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
    **config: Any,
) -> Proc:
    return procs.enter_context(
        start_gateway(
            logs, make_config(fake_proc.url, keys=1, **config), redis_url=redis_url, env=prefix
        )
    )


def test_a_key_with_max_concurrency_2_keeps_serving_after_50_hostile_answers(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    gw = _start(procs, logs, fake_proc, redis_url, prefix, key_extra=", max_concurrency: 2")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    procs.callback(r.close)
    pool = PoolState(r, prefix["KEYWAY_REDIS_PREFIX"])
    fake.fault(KEY_SECRET, "hostile_headers", count=50)

    async def plain(http: httpx.AsyncClient) -> str:
        response = await http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
        content: str = response.json()["choices"][0]["message"]["content"]
        return content

    async def streamed(http: httpx.AsyncClient) -> str:
        async with http.stream("POST", "/v1/chat/completions", json=STREAMED) as response:
            text = (await response.aread()).decode()
        assert response.status_code == 200, text
        payloads = _sse_data(text)
        assert payloads[-1] == "[DONE]", payloads[-3:]
        assert payloads[-2]["usage"]["completion_tokens"] > 0
        return _streamed_text(payloads)

    async def scenario() -> list[str]:
        answers: list[str] = []
        async with httpx.AsyncClient(
            base_url=gw.url, timeout=30, headers={"authorization": "Bearer sk-client-a"}
        ) as http:
            # 50 hostile answers: 15 pairs side by side (the key's whole concurrency), 20 alone
            for _ in range(15):
                answers += await asyncio.gather(plain(http), streamed(http))
            for i in range(20):
                answers.append(await (streamed(http) if i % 2 else plain(http)))
            # one key, no retry: the fault's 50 hostile answers went to exactly these requests
            assert fake.stats()["requests_by_key"] == {KEY_SECRET[-8:]: 50}
            fake.clear_faults()
            for i in range(10):
                answers.append(await (streamed(http) if i % 2 else plain(http)))
        return answers

    answers = asyncio.run(scenario())
    assert len(answers) == 60
    assert all(answer.startswith(FIRST_WORDS) for answer in answers)
    assert _eventually(pool.released), pool.describe()


def test_an_invalid_huge_request_cannot_block_another_client(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    gw = _start(
        procs,
        logs,
        fake_proc,
        redis_url,
        prefix,
        key_extra=", tpm: 10000",
        extra_clients='  - {id: team-c, key: sk-client-c, models: ["*"]}',
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    procs.callback(r.close)
    pool = PoolState(r, prefix["KEYWAY_REDIS_PREFIX"])
    client_a = f"{prefix['KEYWAY_REDIS_PREFIX']}:{{client:team-a}}"
    # A speaks Anthropic to an OpenAI upstream; each request reserves 9000 of the key's 10000
    # tokens a minute, and the upstream refuses it as invalid
    huge = {"model": MODEL, "max_tokens": 9000, "messages": [{"role": "user", "content": "hi"}]}
    fake.fault(KEY_SECRET, "400", count=3)
    a_ids = []
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for _ in range(3):
            refused = http.post(
                "/v1/messages",
                json=huge,
                headers={"x-api-key": "sk-client-a", "anthropic-version": "2023-06-01"},
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["type"] == "error"
            assert refused.json()["error"]["type"] == "invalid_request_error"
            a_ids.append(refused.headers["x-request-id"])
        assert fake.stats()["requests_by_key"] == {KEY_SECRET[-8:]: 3}, "each reached upstream"

        b = http.post(
            "/v1/chat/completions",
            json={**CHAT, "max_tokens": 1500},
            headers={"authorization": "Bearer sk-client-c"},
        )
        assert b.status_code == 200, b.text
        assert b.headers["x-keyway-attempts"] == "1"
        assert b.json()["choices"][0]["message"]["content"].startswith(FIRST_WORDS)

    # A's window holds its three requests (they count against its rpm), none of their tokens
    def a_window_settled() -> bool:
        window = r.hgetall(f"{client_a}:win")
        return window.get("n") == str(len(a_ids)) and window.get("s") == "0"

    assert _eventually(a_window_settled), r.hgetall(f"{client_a}:win")
    assert _eventually(pool.released), pool.describe()


@pytest.mark.timeout(400)
def test_a_stream_longer_than_the_lease_ttl_keeps_its_lease(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    chunks, gap_s = 30, 5.0  # 34 events 5 s apart: ~165 s; the gateway's read timeout is 10 s
    gw = _start(
        procs,
        logs,
        fake_proc,
        redis_url,
        prefix,
        key_extra=", max_concurrency: 1",
        routing="  lease_ttl_s: 60\n",
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    procs.callback(r.close)
    pool = PoolState(r, prefix["KEYWAY_REDIS_PREFIX"])
    client_a = f"{prefix['KEYWAY_REDIS_PREFIX']}:{{client:team-a}}"
    fake.fault(KEY_SECRET, "long_stream", count=1, chunks=chunks, delay_ms=int(gap_s * 1000))
    auth = {"authorization": "Bearer sk-client-a"}
    long_request = {**STREAMED, "max_tokens": 256}  # room for every chunk: one word each

    async def probe(http: httpx.AsyncClient) -> httpx.Response:
        """A second request of the same client: acquire.lua and client_admit.lua run their
        sweeps, which would free the stream's lease and hold had they expired."""
        return await http.post("/v1/chat/completions", json=CHAT)

    async def scenario() -> str:
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=30, headers=auth) as http,
            http.stream("POST", "/v1/chat/completions", json=long_request) as response,
        ):
            assert response.status_code == 200
            opened = time.monotonic()
            stream_id = response.headers["x-request-id"]
            body = asyncio.create_task(response.aread())
            for at_s in (75.0, 140.0):  # past the 60 s TTL; then past a second TTL
                await asyncio.sleep(max(0.0, opened + at_s - time.monotonic()))
                assert not body.done(), "the stream must still run when the probe comes"
                refused = await probe(http)
                # served, it would have found the key free: the stream's lease swept
                assert refused.status_code == 429, (at_s, refused.text, pool.describe())
                assert refused.json()["error"]["code"] == "upstream_capacity"
                assert pool.leases() == 1, "the stream's lease survived the sweep"
                assert r.hexists(f"{client_a}:adm", stream_id), "and so did its admission hold"
            return (await body).decode()

    text = asyncio.run(scenario())

    payloads = _sse_data(text)
    assert payloads[-1] == "[DONE]"
    deltas = [c for c in payloads[:-1] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(deltas) == chunks
    assert _streamed_text(payloads) == FIRST_WORDS + " more" * (chunks - 6)
    assert [c["choices"][0]["finish_reason"] for c in payloads[:-1] if c["choices"]][-1] == "stop"
    usage = payloads[-2]["usage"]
    assert usage["completion_tokens"] == chunks

    assert _eventually(pool.released), pool.describe()
    # the call was charged once, as the upstream reported it, to the key and to the client
    pool_fields = ("k1|gpt-4o-mini:in", "k1|gpt-4o-mini:out")
    client_fields = ("a:gpt-4o-mini:in", "a:gpt-4o-mini:out")
    reported = (usage["prompt_tokens"], usage["completion_tokens"])

    def charged() -> bool:  # usage reaches Redis with the worker's next flush (1 s)
        pool_usage = tuple(_hourly_usage(r, pool.pool, f) for f in pool_fields)
        return pool_usage == reported == tuple(_hourly_usage(r, client_a, f) for f in client_fields)

    assert _eventually(charged), (reported, r.hgetall(f"{client_a}:u:last"))
    assert r.zcard(f"{client_a}:admz") == 0, "no admission hold is left"

    with httpx.Client(base_url=gw.url, timeout=30, headers=auth) as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
