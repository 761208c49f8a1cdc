"""Redis misbehaving under traffic: restarted (scripts lost), stopped (degraded mode), back again."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from gateway.control.store import ConfigStore
from gateway.control.usage import UsageRow, client_usage, key_usage, model_usage
from gateway.state.connection import open_redis
from gateway.state.store import SharedState
from tests.harness import FakeControl, Proc, make_config, start_gateway, start_redis

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
AUTH = {"authorization": "Bearer sk-client-a"}


async def _traffic(url: str, stop: asyncio.Event, codes: list[int]) -> None:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20) as http:
        while not stop.is_set():
            r = await http.post("/v1/chat/completions", json=CHAT)
            codes.append(r.status_code)


def test_redis_restart_under_traffic_loses_no_request(
    procs: contextlib.ExitStack, logs: Path, fake: FakeControl, fake_proc: Proc
) -> None:
    store = procs.enter_context(start_redis(logs))
    url = f"redis://127.0.0.1:{store.port}/0"
    gw = procs.enter_context(start_gateway(logs, make_config(fake_proc.url), redis_url=url))
    codes: list[int] = []

    async def scenario() -> None:
        nonlocal store
        stop = asyncio.Event()
        workers = [asyncio.create_task(_traffic(gw.url, stop, codes)) for _ in range(4)]
        await asyncio.sleep(0.5)
        store.stop()  # the script cache goes with it
        store = procs.enter_context(await asyncio.to_thread(start_redis, logs, port=store.port))
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
    procs: contextlib.ExitStack, logs: Path, fake: FakeControl, fake_proc: Proc
) -> None:
    """Requests served during an outage reach Redis once it is back, exactly once: the client's
    spend and usage, and the pool's usage per key and per model (late records of both)."""
    store = procs.enter_context(start_redis(logs))
    url = f"redis://127.0.0.1:{store.port}/0"
    config = make_config(fake_proc.url, client_rpm=10)
    a = procs.enter_context(start_gateway(logs, config, redis_url=url))
    b = procs.enter_context(start_gateway(logs, config, redis_url=url))
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
            _wait_for(lambda: _pool_requests(r) >= 1)  # its usage flushed (within a second)
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

            store = procs.enter_context(start_redis(logs, port=store.port))  # empty: all lost
            r = redis.Redis(port=store.port, decode_responses=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                back = http.get(f"{a.url}/readyz").json()["status"] == "ready"
                back = back and http.get(f"{b.url}/readyz").json()["status"] == "ready"
                if back and _requests_charged(r) >= 10 and _pool_requests(r) >= 10:
                    break
                time.sleep(0.2)
            # what reached the recovered Redis of the pool: the usage the workers counted, and
            # its batches' markers only (the outage's leases, windows, breakers, cooldowns and
            # refunds stayed local)
            pool_keys = set(r.scan_iter("kw:{pool:fake}:*"))
            replayed = re.compile(r"kw:\{pool:fake\}:(u:h:\d+|u:d:\d+|u:last|flushed:.+)")
            assert all(replayed.fullmatch(k) for k in pool_keys), pool_keys
            assert any(":flushed:" in k for k in pool_keys)
            outage = _usage(url)
            assert outage.keys[0] == 10, outage  # each request served during the outage, once
            assert outage == _Usage(outage.keys, {"gpt-4o-mini": outage.keys}, outage.keys)
            after = http.post(f"{b.url}/v1/chat/completions", json=CHAT)
            assert after.status_code == 200 and "x-keyway-degraded" not in after.headers
            time.sleep(1.0)
            # the 10 requests served locally were charged to Redis exactly once, plus `after`;
            # per upstream key and model as per client (same tokens, same cost)
            assert _requests_charged(r) == 11
            final = _usage(url)
            assert final.keys[0] == 11 and final.keys[4] == 0, final
            assert final == _Usage(final.keys, {"gpt-4o-mini": final.keys}, final.keys)
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


def _wait_for(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _pool_requests(r: redis.Redis) -> int:  # type: ignore[type-arg]
    """Requests in the pool's usage: each is written once, to its hour bucket, per (key, model)."""
    total = 0
    for key in r.scan_iter("kw:{pool:fake}:u:h:*"):
        fields = r.hgetall(key)
        total += sum(int(v) for f, v in fields.items() if "|" in f and f.endswith(":req"))
    return total


Totals = tuple[int, int, int, float, int]
"""requests, tokens in, tokens out, cost (USD), errors"""


@dataclass(frozen=True)
class _Usage:
    keys: Totals
    """The pool's keys k1..k3 together."""
    models: dict[str, Totals]
    client: Totals


def _usage(url: str) -> _Usage:
    """Usage of the last two hours as the admin API reads it (gateway/control/usage.py)."""

    def summed(rows: list[UsageRow]) -> Totals:
        return (
            sum(r.requests for r in rows),
            sum(r.tokens_in for r in rows),
            sum(r.tokens_out for r in rows),
            round(sum(r.cost_usd for r in rows), 6),
            sum(r.errors for r in rows),
        )

    async def read() -> _Usage:
        state = SharedState(open_redis(url), prefix="kw")
        store = ConfigStore(state)
        try:
            rows = [await key_usage(store, "fake", k, "hour", 2) for k in ("k1", "k2", "k3")]
            models = await model_usage(store, ["fake"], "hour", 2)
            client = await client_usage(store, "team-a", "hour", 2)
        finally:
            await state.aclose()
        return _Usage(
            keys=summed([r for key in rows for r in key]),
            models={model: summed(m) for (_, model), m in models.items()},
            client=summed(client),
        )

    return asyncio.run(read())


def test_failed_attempts_on_local_leases_reach_redis_usage_once(
    procs: contextlib.ExitStack, logs: Path, fake: FakeControl, fake_proc: Proc
) -> None:
    """An attempt that fails during an outage (a 500, then the next key answers) is a request
    and an error in the pool's usage once Redis is back; the client sees one request."""
    store = procs.enter_context(start_redis(logs))
    url = f"redis://127.0.0.1:{store.port}/0"
    gw = procs.enter_context(start_gateway(logs, make_config(fake_proc.url), redis_url=url))
    try:
        with httpx.Client(headers=AUTH, timeout=10) as http:
            assert http.post(f"{gw.url}/v1/chat/completions", json=CHAT).status_code == 200
            r_before = redis.Redis(port=store.port, decode_responses=True)
            _wait_for(lambda: _pool_requests(r_before) >= 1)  # that usage lands in this Redis
            store.stop()
            fake.fault("*", "500", count=1)  # whichever key is tried first fails once
            served = http.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert served.status_code == 200, served.text
            assert served.headers["x-keyway-degraded"] == "redis-unavailable"
            assert served.headers["x-keyway-attempts"] == "2"
            store = procs.enter_context(start_redis(logs, port=store.port))  # empty: all lost
            r = redis.Redis(port=store.port, decode_responses=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (
                _pool_requests(r) < 2 or _requests_charged(r) < 1
            ):
                time.sleep(0.2)
            time.sleep(0.5)  # nothing more may arrive
            outage = _usage(url)
            assert outage.keys[0] == 2 and outage.keys[4] == 1, outage  # 2 attempts, 1 failed
            assert outage.client[0] == 1 and outage.client[4] == 0, outage
    finally:
        gw.stop()
        store.stop()
