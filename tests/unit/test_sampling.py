"""gateway/routing/sampling.py: which keys one acquire call examines, in which order."""

from __future__ import annotations

import random
from collections import Counter

from gateway.routing.sampling import SAMPLE, split


def _pool(n: int, weight: int = 1) -> list[tuple[str | int, ...]]:
    return [(f"k{i}", 0, 0, 0, weight) for i in range(n)]


def test_a_small_pool_is_sent_whole_and_shuffled() -> None:
    pool = _pool(5)
    orders = set()
    rng = random.Random(1)
    for _ in range(50):
        first, rest = split("least-utilised", pool, rng)
        assert sorted(first) == sorted(pool) and rest == []
        orders.add(tuple(c[0] for c in first))
    assert len(orders) > 10


def test_a_large_pool_sends_a_sample_then_everything_else_once() -> None:
    pool = _pool(200)
    rng = random.Random(2)
    for strategy in ("least-utilised", "lowest-latency", "weighted", "priority"):
        first, rest = split(strategy, pool, rng)
        assert len(first) == SAMPLE
        assert sorted(first + rest) == sorted(pool), strategy


def test_priority_keeps_the_configured_order() -> None:
    pool = _pool(20)
    first, rest = split("priority", pool)
    assert first + rest == pool


def test_the_uniform_sample_covers_the_pool_evenly() -> None:
    pool = _pool(200)
    rng = random.Random(3)
    seen: Counter[str | int] = Counter()
    for _ in range(5000):
        first, _rest = split("least-utilised", pool, rng)
        seen.update(c[0] for c in first)
    mean = 5000 * SAMPLE / 200
    assert len(seen) == 200
    assert max(seen.values()) < 1.3 * mean and min(seen.values()) > 0.7 * mean


def test_weighted_order_draws_by_weight_and_puts_weight_zero_last() -> None:
    pool = [("heavy", 0, 0, 0, 3), ("light", 0, 0, 0, 1), ("off", 0, 0, 0, 0)]
    rng = random.Random(4)
    heads: Counter[str | int] = Counter()
    for _ in range(4000):
        first, rest = split("weighted", pool, rng)
        assert first[-1][0] == "off" and rest == []
        heads[first[0][0]] += 1
    # 3:1 -> 3000 / 1000 expected; a seeded draw, so the bound is not a matter of luck
    assert 2800 < heads["heavy"] < 3200 and heads["off"] == 0


def test_weighted_large_pool_draws_the_sample_by_weight() -> None:
    pool = [(f"h{i}", 0, 0, 0, 10) for i in range(10)] + [(f"l{i}", 0, 0, 0, 1) for i in range(190)]
    rng = random.Random(5)
    heavy = 0
    for _ in range(1000):
        first, _rest = split("weighted", pool, rng)
        heavy += first[0][0].startswith("h")  # type: ignore[union-attr]
    # 100 of 290 weight units are heavy: about 345 of 1000 first draws
    assert 290 < heavy < 400
