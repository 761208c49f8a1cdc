"""The key pool against real Redis: limits hold exactly, 429s move traffic, replicas share state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx

from tests.harness import FakeControl, Proc, make_config, start_gateway

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def _blast(urls: list[str], n: int, key: str = "sk-client-a") -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        f"{urls[i % len(urls)]}/v1/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for i in range(n)
                )
            )
        )


def test_200_concurrent_requests_never_exceed_any_key_rpm(
    logs: Path, fake: FakeControl, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    gw = start_gateway(
        logs, make_config(fake_proc.url, keys=4, key_rpm=30), redis_url=redis_url, env=prefix
    )
    try:
        responses = asyncio.run(_blast([gw.url], 200))
    finally:
        gw.stop()
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == 120, [r.status_code for r in responses if r.status_code not in (200, 429)]
    assert len(limited) == 80
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert all(r.json()["error"]["type"] == "rate_limit_error" for r in limited)
    per_key = fake.requests_by_key()
    assert len(per_key) == 4, per_key
    assert all(count == 30 for count in per_key.values()), per_key


def test_a_429_moves_traffic_away_until_retry_after(
    logs: Path, fake: FakeControl, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    gw = start_gateway(logs, make_config(fake_proc.url, keys=2), redis_url=redis_url, env=prefix)
    hot = "sk-fake-test-0001"
    try:
        with httpx.Client(base_url=gw.url, headers={"authorization": "Bearer sk-client-a"}) as http:
            fake.fault(hot, "429", count=1, retry_after_s=5)
            # keep sending until the hot key has been hit once (least-utilised picks either)
            for _ in range(10):
                r = http.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 200, r.text
                if fake.requests_by_key().get(hot[-8:], 0) == 1:
                    break
            assert r.headers["x-keyway-key"] == "k2"
            assert r.headers["x-keyway-attempts"] == "2"
            cooled_at = time.monotonic()
            for _ in range(6):
                assert http.post("/v1/chat/completions", json=CHAT).headers["x-keyway-key"] == "k2"
            assert time.monotonic() - cooled_at < 5, "the check above must run inside the cooldown"
            assert fake.requests_by_key()[hot[-8:]] == 1
            time.sleep(max(0.0, 5.6 - (time.monotonic() - cooled_at)))  # Retry-After + 10% jitter
            used = {
                http.post("/v1/chat/completions", json=CHAT).headers["x-keyway-key"]
                for _ in range(6)
            }
            assert "k1" in used
    finally:
        gw.stop()


def test_two_gateway_processes_share_the_limits_exactly(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    config = make_config(fake_proc.url, keys=2, key_rpm=10, client_rpm=15)
    a = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=prefix))
    b = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=prefix))
    try:
        responses = asyncio.run(_blast([a.url, b.url], 40))
    finally:
        a.stop()
        b.stop()
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 15, codes  # the client's 15/min binds before the keys' 20
    assert codes.count(429) == 25
    client_limited = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in client_limited} == {"client_rpm"}
    assert sum(fake.requests_by_key().values()) == 15
    assert all(v <= 10 for v in fake.requests_by_key().values())


def test_recent_routing_decisions_say_which_key_and_why_not_the_others(
    logs: Path, fake: FakeControl, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    admin_key = "admin-key-for-decisions-test"
    env = {**prefix, "KEYWAY_ADMIN_KEYS": admin_key, "KEYWAY_CLIENT_KEY_SECRET": "s" * 32}
    gw = start_gateway(logs, make_config(fake_proc.url, keys=2), redis_url=redis_url, env=env)
    try:
        with httpx.Client(base_url=gw.url, headers={"authorization": "Bearer sk-client-a"}) as http:
            fake.fault("sk-fake-test-0001", "500")
            fake.fault("sk-fake-test-0002", "500")
            failed = http.post("/v1/chat/completions", json=CHAT)
            assert failed.status_code == 502
            fake.clear_faults()
            ok = http.post("/v1/chat/completions", json=CHAT)
            assert ok.status_code == 200
            recent = http.get(
                "/admin/decisions", headers={"authorization": f"Bearer {admin_key}"}
            ).json()
        newest, older = recent[0], recent[1]
        assert newest["chosen"] == f"fake/{ok.headers['x-keyway-key']}" and newest["error"] is None
        assert older["chosen"] is None and older["error"] == "upstream_error"
        assert sorted(older["failed"]) == ["fake/k1=server_error", "fake/k2=server_error"]
    finally:
        gw.stop()
