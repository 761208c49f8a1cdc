"""Four gateway replicas behind a real haproxy, on one real Redis: limits, breakers and leases
hold for the cluster as a whole."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.harness import (
    FakeControl,
    Proc,
    make_config,
    start_gateway,
    start_haproxy,
    stop_on_failure,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _cluster(
    procs: contextlib.ExitStack,
    logs: Path,
    config: str,
    redis_url: str,
    prefix: dict[str, str],
    n: int = 4,
) -> tuple[list[Proc], Proc]:
    """`n` replicas behind haproxy, all or nothing: if one of them (haproxy, say) does not start,
    those already started are stopped at once. Once up, they are `procs`' to stop."""
    with stop_on_failure() as started:
        replicas = [
            started.enter_context(start_gateway(logs, config, redis_url=redis_url, env=prefix))
            for _ in range(n)
        ]
        lb = started.enter_context(start_haproxy(logs, [g.port for g in replicas]))
    for p in (*replicas, lb):
        procs.enter_context(p)
    return replicas, lb


async def _burst(url: str, n: int, key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for _ in range(n)
                )
            )
        )


@pytest.fixture()
def four_replicas(
    procs: contextlib.ExitStack, logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> tuple[list[Proc], Proc]:
    config = make_config(
        fake_proc.url,
        keys=4,
        key_rpm=30,
        extra_clients="  - {id: capped, key: sk-client-capped, rpm: 50}\n",
    )
    return _cluster(procs, logs, config, redis_url, prefix)


def test_400_concurrent_requests_admit_exactly_the_client_limit(
    four_replicas: tuple[list[Proc], Proc], fake: FakeControl
) -> None:
    _replicas, lb = four_replicas
    responses = asyncio.run(_burst(lb.url, 400, "sk-client-capped"))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 50, {c: codes.count(c) for c in set(codes)}
    assert codes.count(429) == 350
    assert sum(fake.requests_by_key().values()) == 50


def test_upstream_keys_never_exceed_their_rpm_across_replicas(
    four_replicas: tuple[list[Proc], Proc], fake: FakeControl
) -> None:
    _replicas, lb = four_replicas
    responses = asyncio.run(_burst(lb.url, 400, "sk-client-a"))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 120, {c: codes.count(c) for c in set(codes)}
    per_key = fake.requests_by_key()
    assert sorted(per_key.values()) == [30, 30, 30, 30], per_key


def test_breaker_admits_one_probe_per_open_interval_across_replicas(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    routing = (
        "  breaker: {consecutive_failures: 3, open_s: 0.4, max_open_s: 0.8, min_requests: 1000}\n"
    )
    config = make_config(fake_proc.url, keys=2, routing=routing)
    _replicas, lb = _cluster(procs, logs, config, redis_url, prefix)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    state_key = f"{prefix['KEYWAY_REDIS_PREFIX']}:{{pool:fake}}:k:k1"
    bad = "sk-fake-test-0001"
    codes: list[int] = []

    async def clients(seconds: float) -> None:
        stop = time.monotonic() + seconds

        async def one() -> None:
            async with httpx.AsyncClient(
                base_url=lb.url, timeout=30, headers={"authorization": "Bearer sk-client-a"}
            ) as http:
                while time.monotonic() < stop:
                    codes.append((await http.post("/v1/chat/completions", json=CHAT)).status_code)

        await asyncio.gather(*(one() for _ in range(8)))

    fake.fault(bad, "500")
    asyncio.run(clients(1.0))
    assert r.hget(state_key, "br") in ("open", "half")
    opens_before = int(r.hget(state_key, "br_opens") or 0)
    fake.reset()  # count from here on
    fake.fault(bad, "500")
    asyncio.run(clients(3.0))
    opens_after = int(r.hget(state_key, "br_opens") or 0)
    hits = fake.requests_by_key().get(bad[-8:], 0)
    probes_failed = opens_after - opens_before
    # every hit on the broken key was a probe, and each failed probe reopened the breaker
    assert hits >= 1
    assert hits in (probes_failed, probes_failed + 1), (hits, probes_failed)
    assert fake.stats()["max_in_flight_by_key"].get(bad[-8:], 0) == 1, "never two probes at once"
    assert set(codes) == {200}, "the healthy key served every request"
    fake.clear_faults()
    asyncio.run(clients(2.0))
    assert r.hget(state_key, "br") == "closed"
    assert fake.requests_by_key()[bad[-8:]] > hits + 2, "the recovered key takes traffic again"


def test_a_killed_replica_releases_its_lease_within_the_lease_ttl(
    procs: contextlib.ExitStack,
    logs: Path,
    fake: FakeControl,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    config = make_config(
        fake_proc.url, keys=1, key_extra=", max_concurrency: 1", routing="  lease_ttl_s: 2\n"
    )
    victim = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=prefix))
    survivor = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=prefix))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    state_key = f"{prefix['KEYWAY_REDIS_PREFIX']}:{{pool:fake}}:k:k1"
    fake.fault("*", "hang", count=1)
    with httpx.Client(timeout=30, headers={"authorization": "Bearer sk-client-a"}) as http:

        async def doomed() -> None:
            async with httpx.AsyncClient(
                timeout=30, headers={"authorization": "Bearer sk-client-a"}
            ) as c:
                with contextlib.suppress(httpx.HTTPError):
                    await c.post(f"{victim.url}/v1/chat/completions", json=CHAT)

        async def kill_mid_request() -> None:
            task = asyncio.create_task(doomed())
            deadline = time.monotonic() + 10
            # wait until the request holds its lease AND is hanging at the upstream
            while time.monotonic() < deadline and not (
                r.hget(state_key, "infl") == "1"
                and sum(fake.stats()["in_flight_by_key"].values()) == 1
            ):
                await asyncio.sleep(0.05)
            victim.kill()  # kill -9 between acquire and settle
            await task

        asyncio.run(kill_mid_request())
        assert r.hget(state_key, "infl") == "1", "the dead replica's lease is still held"
        blocked = http.post(f"{survivor.url}/v1/chat/completions", json=CHAT)
        assert blocked.status_code == 429  # max_concurrency 1, held by the dead lease
        time.sleep(2.2)  # the lease TTL
        freed = http.post(f"{survivor.url}/v1/chat/completions", json=CHAT)
        assert freed.status_code == 200, freed.text
        time.sleep(0.3)
        assert r.hget(state_key, "infl") == "0"
