"""A pool too hot for one Redis shard, split into several providers behind one `spread` alias.

Every key of a pool shares one hash tag (`{pool:<provider>}`), so a pool lives on one Redis
Cluster slot and its scripts run on one shard's thread. Listing its keys under several providers
(same kind, base URL and model) gives each part its own slot; `models.<alias>.spread: true`
then starts each request at a part drawn by key count instead of always at the first. Run on a
real three-node Redis Cluster, through a real gateway process.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import httpx
import redis
from redis.crc import key_slot

from gateway.state.layout import pool_prefix
from tests.harness import Proc, start_gateway

SHARDS = ("shard-a", "shard-b", "shard-c")
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
AUTH = {"authorization": "Bearer sk-client-shards"}


def _config(fake_url: str) -> str:
    providers = "".join(
        f"""
  {name}:
    kind: openai-compatible
    base_url: {fake_url}/v1
    timeout_s: 10
    keys:
      - {{id: {name[-1]}1, secret: sk-fake-{name}-0001, rpm: 100000}}
      - {{id: {name[-1]}2, secret: sk-fake-{name}-0002, rpm: 100000}}"""
        for name in SHARDS
    )
    deployments = "".join(f"\n      - {{provider: {n}, model: gpt-4o-mini}}" for n in SHARDS)
    return f"""
providers:{providers}
models:
  hot:
    spread: true
    deployments:{deployments}
  ordered:
    deployments:{deployments}
clients:
  - {{id: shards, key: sk-client-shards, rpm: 100000}}
"""


def test_a_spread_alias_routes_across_pools_on_different_slots(
    procs: contextlib.ExitStack, logs: Path, fake_proc: Proc, redis_cluster: str
) -> None:
    slots = {key_slot(f"{pool_prefix('kw', n)}:leases".encode()) for n in SHARDS}
    assert len(slots) == len(SHARDS), "each part of the pool has a slot of its own"
    gw = procs.enter_context(start_gateway(logs, _config(fake_proc.url), redis_url=redis_cluster))
    served: Counter[str] = Counter()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as http:
        for _ in range(90):
            r = http.post("/v1/chat/completions", json={**CHAT, "model": "hot"})
            assert r.status_code == 200, r.text
            served[r.headers["x-keyway-key"][0]] += 1  # a1/a2 -> "a", b1/b2 -> "b", ...
        # without `spread` the same deployments are tried in order: the first serves them all
        ordered = {
            http.post("/v1/chat/completions", json={**CHAT, "model": "ordered"}).headers[
                "x-keyway-key"
            ][0]
            for _ in range(20)
        }
    assert ordered == {"a"}
    assert set(served) == {"a", "b", "c"}
    # 2 keys each: a third each expected (30 of 90); 12 is more than four deviations below
    assert min(served.values()) >= 12, served
    # and each part's state lives under its own hash tag, on the Cluster
    cluster = redis.RedisCluster.from_url(
        redis_cluster.replace("redis+cluster://", "redis://"), decode_responses=True
    )
    try:
        for name in SHARDS:
            prefix = pool_prefix("kw", name)
            windows = [cluster.exists(f"{prefix}:win:{name[-1]}{i}") for i in (1, 2)]
            assert sum(windows) >= 1, name
    finally:
        cluster.close()
