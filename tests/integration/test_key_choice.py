"""Choosing a key in a large pool: fair, and at a cost that does not grow with the pool.

The router sends acquire.lua a sample of the pool (gateway/routing/sampling.py) and the rest only
when none of the sample has room; these tests drive the same two calls on real stores.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from gateway.routing.sampling import split
from gateway.state.connection import open_redis
from gateway.state.layout import pool_prefix
from gateway.state.store import Lease, NoKey, SharedState

_ids = itertools.count()
Cand = tuple[str | int, ...]


async def choose(
    s: SharedState, pool: list[Cand], strategy: str, rng: random.Random
) -> Lease | NoKey:
    """What Router does: the sample, then (only if it had no room) the rest."""
    first, rest = split(strategy, pool, rng)
    got = await _acquire(s, first, strategy)
    if isinstance(got, NoKey) and rest:
        more = await _acquire(s, rest, strategy)
        got = more if isinstance(more, Lease) else got.merge(more)
    return got


async def _acquire(s: SharedState, cands: list[Cand], strategy: str) -> Lease | NoKey:
    lease = f"L{next(_ids)}"
    call = s.acquire_call(
        "p", lease, tokens=10, lease_ttl_ms=60_000, strategy=strategy, random=0,
        candidates=cands, model="m",
    )  # fmt: skip
    return s.parse_acquire("p", lease, (await s.run([call]))[0])


async def settle_ok(s: SharedState, lease: Lease) -> None:
    args = ("ok", 10, 0, -1, -1, -1, 5, 3, 50, 100, 60_000, 200, 10_000, 0, "", "m")
    await s.run([s.settle_call(lease, args)])


@pytest.fixture
async def standalone(redis_url: str) -> AsyncIterator[SharedState]:
    store = SharedState(open_redis(redis_url, timeout_s=5.0), prefix=f"kc{uuid.uuid4().hex[:8]}")
    await store.load_scripts()
    yield store
    await store.aclose()


async def test_least_utilised_spreads_evenly_over_200_keys(standalone: SharedState) -> None:
    """Uniform load over a 200-key pool: no key above 1.2x the mean share."""
    pool: list[Cand] = [(f"k{i}", 1_000_000, 0, 0, 1) for i in range(200)]
    rng = random.Random(7)
    served: Counter[str] = Counter()
    for _ in range(10_000):
        lease = await choose(standalone, pool, "least-utilised", rng)
        assert isinstance(lease, Lease)
        served[lease.key_id] += 1
        await settle_ok(standalone, lease)
    mean = 10_000 / 200
    assert len(served) == 200
    assert max(served.values()) <= 1.2 * mean, served.most_common(3)


async def test_a_call_examines_only_its_sample(state: SharedState) -> None:
    """least-utilised stops at the second key with room: the other sampled keys' windows are
    never touched, and keys outside the sample are not even sent."""
    pool: list[Cand] = [(f"k{i}", 1000, 0, 0, 1) for i in range(200)]
    first, _rest = split("least-utilised", pool, random.Random(8))
    lease = await _acquire(state, first, "least-utilised")
    assert isinstance(lease, Lease)
    p = pool_prefix(state.prefix, "p")
    redis = state.handle.client
    windows = [c[0] for c in pool if await redis.exists(f"{p}:win:{c[0]}")]
    assert windows == [lease.key_id] or (len(windows) <= 2 and lease.key_id in windows)
    assert set(windows) <= {c[0] for c in first[:2]}


async def test_a_full_sample_falls_through_to_the_rest_of_the_pool(state: SharedState) -> None:
    """Never refused while some key has room: with only one key of 40 free, every request
    finds it (after the sample's refusals), and a full pool's refusal names every key."""
    pool: list[Cand] = [(f"k{i}", 1, 0, 0, 1) for i in range(40)]
    rng = random.Random(9)
    for _ in range(39):  # fill every key but one (rpm 1 each)
        assert isinstance(await choose(state, pool, "least-utilised", rng), Lease)
    last = await choose(state, pool, "least-utilised", rng)
    assert isinstance(last, Lease)
    refused = await choose(state, pool, "least-utilised", rng)
    assert isinstance(refused, NoKey)
    assert sorted(refused.skipped.split(",")) == sorted(f"k{i}=rpm" for i in range(40))
    assert 59_000 <= refused.wait_ms <= 61_000


async def test_weighted_serves_by_weight_among_keys_with_room(state: SharedState) -> None:
    pool: list[Cand] = [("heavy", 0, 0, 0, 3), ("light", 0, 0, 0, 1), ("full", 1, 0, 0, 50)]
    rng = random.Random(10)
    served: Counter[str] = Counter()
    for _ in range(400):
        lease = await choose(state, pool, "weighted", rng)
        assert isinstance(lease, Lease)
        served[lease.key_id] += 1
        await settle_ok(state, lease)
    # "full" (rpm 1) serves once, then the draw among the two with room is 3:1
    assert served["full"] == 1
    assert 240 < served["heavy"] < 340 and served["heavy"] + served["light"] == 399
