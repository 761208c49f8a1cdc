"""SIGTERM while streams are in flight: every stream completes, the process exits, no lease stays."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import httpx
import redis

from tests.harness import make_config, start_fake_provider, start_gateway

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_sigterm_lets_50_streams_finish_and_settles_every_lease(
    procs: contextlib.ExitStack, logs: Path, redis_url: str, prefix: dict[str, str]
) -> None:
    slow = procs.enter_context(start_fake_provider(logs, args=["--chunk-delay-ms", "300"]))
    gw = procs.enter_context(
        start_gateway(
            logs,
            make_config(slow.url),
            redis_url=redis_url,
            env={**prefix, "SHUTDOWN_TIMEOUT_SECONDS": "30"},
        )
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    leases = f"{prefix['KEYWAY_REDIS_PREFIX']}:{{pool:fake}}:leases"

    async def one(http: httpx.AsyncClient) -> str:
        async with http.stream("POST", "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status_code == 200
            return "".join([chunk async for chunk in resp.aiter_text()])

    async def scenario() -> list[str]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(
            base_url=gw.url,
            timeout=60,
            limits=limits,
            headers={"authorization": "Bearer sk-client-a"},
        ) as http:
            tasks = [asyncio.create_task(one(http)) for _ in range(50)]
            deadline = time.monotonic() + 10
            while r.zcard(leases) < 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert r.zcard(leases) == 50, "all 50 streams hold a lease when SIGTERM arrives"
            gw.signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            # readiness is red at once: a new connection is refused or told 503
            async with httpx.AsyncClient(base_url=gw.url, timeout=2) as probe:
                try:
                    ready = (await probe.get("/readyz")).status_code
                except httpx.TransportError:
                    ready = 0
            assert ready in (0, 503)
            assert not any(t.done() for t in tasks), "the streams were still running"
            return await asyncio.gather(*tasks)

    try:
        started = time.monotonic()
        bodies = asyncio.run(scenario())
        assert len(bodies) == 50
        assert all(b.rstrip().endswith("data: [DONE]") for b in bodies), (
            "every stream ran to its end"
        )
        assert gw.popen.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
        time.sleep(0.2)
        assert r.zcard(leases) == 0, "every lease was settled before the process exited"
        infl = [
            int(r.hget(f"{prefix['KEYWAY_REDIS_PREFIX']}:{{pool:fake}}:k:k{i}", "infl") or 0)
            for i in (1, 2, 3)
        ]
        assert infl == [0, 0, 0]
    finally:
        gw.stop()
        slow.stop()
