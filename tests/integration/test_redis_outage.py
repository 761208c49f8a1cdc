"""Redis misbehaving under traffic: restarted (scripts lost), stopped (degraded mode), back again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import redis

from tests.harness import FakeControl, Proc, make_config, start_gateway, start_redis

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
AUTH = {"authorization": "Bearer sk-client-a"}


async def _traffic(url: str, stop: asyncio.Event, codes: list[int]) -> None:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20) as http:
        while not stop.is_set():
            r = await http.post("/v1/chat/completions", json=CHAT)
            codes.append(r.status_code)


def test_redis_restart_under_traffic_loses_no_request(
    logs: Path, fake: FakeControl, fake_proc: Proc
) -> None:
    store = start_redis(logs)
    url = f"redis://127.0.0.1:{store.port}/0"
    gw = start_gateway(logs, make_config(fake_proc.url), redis_url=url)
    codes: list[int] = []

    async def scenario() -> None:
        nonlocal store
        stop = asyncio.Event()
        workers = [asyncio.create_task(_traffic(gw.url, stop, codes)) for _ in range(4)]
        await asyncio.sleep(0.5)
        store.stop()  # the script cache goes with it
        store = await asyncio.to_thread(start_redis, logs, port=store.port)
        await asyncio.sleep(1.5)
        scripts = redis.Redis(port=store.port).script_exists(*_shas())
        stop.set()
        await asyncio.gather(*workers)
        assert all(scripts), "the gateway loaded its scripts into the restarted Redis"

    try:
        asyncio.run(scenario())
    finally:
        gw.stop()
        store.stop()
    assert len(codes) > 20
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


def _shas() -> list[str]:
    from gateway.state.scripts import ALL_SCRIPTS

    return [s.sha for s in ALL_SCRIPTS]


def test_degraded_mode_takes_a_local_share_and_replays_charges_once(
    logs: Path, fake: FakeControl, fake_proc: Proc
) -> None:
    store = start_redis(logs)
    url = f"redis://127.0.0.1:{store.port}/0"
    config = make_config(fake_proc.url, client_rpm=10)
    a = start_gateway(logs, config, redis_url=url)
    b = start_gateway(logs, config, redis_url=url)
    r = redis.Redis(port=store.port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while r.zcard("kw:{meta}:replicas") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.zcard("kw:{meta}:replicas") == 2, "both replicas beat before the outage"
        time.sleep(2.5)  # let every replica learn the count from its next heartbeat
        with httpx.Client(headers=AUTH, timeout=10) as http:
            before = http.post(f"{a.url}/v1/chat/completions", json=CHAT)
            assert before.status_code == 200 and "x-keyway-degraded" not in before.headers
            store.stop()
            # each replica now admits 10 / 2 replicas = 5 per minute on its own
            results = {
                g.url: [http.post(f"{g.url}/v1/chat/completions", json=CHAT) for _ in range(7)]
                for g in (a, b)
            }
            for replies in results.values():
                codes = [x.status_code for x in replies]
                assert codes == [200] * 5 + [429] * 2, codes
                assert all(
                    x.headers.get("x-keyway-degraded") == "redis-unavailable" for x in replies
                )
                assert all(x.headers.get("retry-after") for x in replies if x.status_code == 429)
            ready = http.get(f"{a.url}/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            # an unknown key is refused, never "allowed because Redis is down"
            assert (
                http.post(
                    f"{a.url}/v1/chat/completions",
                    json=CHAT,
                    headers={"authorization": "Bearer nope"},
                ).status_code
                == 401
            )

            store = start_redis(logs, port=store.port)  # empty: the outage lost everything
            r = redis.Redis(port=store.port, decode_responses=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                back = http.get(f"{a.url}/readyz").json()["status"] == "ready"
                back = back and http.get(f"{b.url}/readyz").json()["status"] == "ready"
                if back and _requests_charged(r) >= 10:
                    break
                time.sleep(0.2)
            after = http.post(f"{b.url}/v1/chat/completions", json=CHAT)
            assert after.status_code == 200 and "x-keyway-degraded" not in after.headers
            time.sleep(1.0)
            # the 10 requests served locally were charged to Redis exactly once, plus `after`
            assert _requests_charged(r) == 11
    finally:
        a.stop()
        b.stop()
        store.stop()


def _requests_charged(r: redis.Redis) -> int:  # type: ignore[type-arg]
    """Requests in the client's usage: each is written once, to its hour bucket, per alias."""
    total = 0
    for key in r.scan_iter("kw:{client:team-a}:u:h:*"):
        fields = r.hgetall(key)
        total += sum(int(v) for f, v in fields.items() if f.startswith("a:") and f.endswith(":req"))
    return total
