"""Usage by hour and day: a worker's batches add to hour buckets, day buckets filled by a roll-up.

Run on standalone Redis, a three-node Redis Cluster and the embedded store. Requests go through
the four per-request scripts and their usage through gateway/state/usage_buffer.py and
usage_flush.lua, as the router counts it. "An earlier hour" is made by moving what a request
wrote, and the marker with it, back in time: exactly the state a request of that hour would have
left.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest

from gateway.control.store import ConfigStore
from gateway.control.usage import Period, UsageRow, client_usage, key_usage, model_usage
from gateway.state.layout import client_prefix, pool_prefix
from gateway.state.scripts import USAGE_FLUSH
from gateway.state.store import Lease, ScriptCall, SharedState, StateError
from gateway.state.usage_buffer import UsageBuffer

BREAKER = (1000, 100, 1000, 60_000, 1000, 1000)
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
_ids = itertools.count()
BOTH: list[tuple[Period, int]] = [("hour", 4), ("day", 2)]


async def request(
    s: SharedState,
    *,
    key: str = "a",
    model: str = "up-model",
    alias: str = "alias-1",
    tin: int = 10,
    tout: int = 5,
    cost: int = 300,
    outcome: str = "ok",
) -> None:
    """One request through the four scripts: admit, acquire, settle, client settle."""
    req = f"u{next(_ids)}"
    admit = s.client_admit_call(
        "c", req, rpm=0, tpm=0, tokens=tin, cost_micros=cost, budget_day_micros=0,
        budget_month_micros=0, hold_ttl_ms=60_000,
    )  # fmt: skip
    assert int((await s.run([admit]))[0][0]) == 1
    acquire = s.acquire_call(
        "p", req, tokens=tin, lease_ttl_ms=60_000, strategy="priority", random=0,
        candidates=[(key, 0, 0, 0, 1)], model=model,
    )  # fmt: skip
    lease = s.parse_acquire("p", req, (await s.run([acquire]))[0])
    assert isinstance(lease, Lease)
    args = (outcome, tin + tout, 0, -1, -1, -1, 5, *BREAKER, 0, "", model)
    assert int((await s.run([s.settle_call(lease, args)]))[0][0]) == 1
    mode = "refund" if outcome == "refund" else "charge"
    charge = s.client_settle_call(
        "c", req, mode=mode, tokens_in=tin, tokens_out=tout, cost_micros=cost
    )
    assert int((await s.run([charge]))[0]) == 1
    usage = UsageBuffer(s)  # what Settlement counts for this request
    if outcome != "refund":
        usage.pool("p", key, model, tin, tout, cost, outcome != "ok")
        usage.client("c", alias, tin, tout, cost, False)
    else:
        usage.client("c", alias, 0, 0, 0, True)
    assert await usage.flush()


async def late(
    s: SharedState,
    *,
    key: str = "a",
    model: str = "up-model",
    tin: int = 10,
    tout: int = 5,
    cost: int = 300,
    outcome: str = "ok",
) -> None:
    """A pool's usage batch that reaches Redis late (counted during an outage, flushed now)."""
    usage = UsageBuffer(s)
    usage.pool("p", key, model, tin, tout, cost, outcome != "ok")
    assert await usage.flush()


def batch_call(s: SharedState, batch_id: str, hour: int, group: str, *counts: int) -> ScriptCall:
    """usage_flush.lua for one field group of pool "p"."""
    prefix = pool_prefix(s.prefix, "p")
    args = (prefix, batch_id, "^[^:|]*|", 1, hour, group, *counts)
    return ScriptCall(USAGE_FLUSH, (f"{prefix}:u:last",), args)


def prefixes(s: SharedState) -> tuple[str, str]:
    return pool_prefix(s.prefix, "p"), client_prefix(s.prefix, "c")


async def marker(s: SharedState, prefix: str) -> int:
    return int(await s.handle.client.hget(f"{prefix}:u:last", "h"))


async def move_back(s: SharedState, hours: int) -> int:
    """Move the marker's hour bucket (pool and client) `hours` back, with the marker; its hour."""
    redis = s.handle.client
    moved = 0
    for prefix in prefixes(s):
        hour = await marker(s, prefix)
        moved = hour - hours
        await redis.rename(f"{prefix}:u:h:{hour}", f"{prefix}:u:h:{moved}")
        await redis.hset(f"{prefix}:u:last", "h", moved)
    return moved


def summed(rows: list[UsageRow]) -> tuple[int, int, int, float, int]:
    return (
        sum(r.requests for r in rows),
        sum(r.tokens_in for r in rows),
        sum(r.tokens_out for r in rows),
        round(sum(r.cost_usd for r in rows), 6),
        sum(r.errors for r in rows),
    )


def by_day(hour_rows: list[UsageRow]) -> dict[int, tuple[int, int, int, float, int]]:
    days: dict[int, list[UsageRow]] = defaultdict(list)
    for r in hour_rows:
        days[r.start_ms // DAY_MS].append(r)
    return {d: summed(rows) for d, rows in days.items()}


async def assert_days_are_their_hours(s: SharedState) -> None:
    """Every view by day equals the sum of its hours: key, model and client."""
    store = ConfigStore(s)
    views: list[tuple[list[UsageRow], list[UsageRow]]] = [
        (await client_usage(store, "c", "hour", 72), await client_usage(store, "c", "day", 3))
    ]
    for key in ("a", "b"):
        views.append(
            (
                await key_usage(store, "p", key, "hour", 72),
                await key_usage(store, "p", key, "day", 3),
            )
        )
    hours, days = (
        await model_usage(store, ["p"], "hour", 72),
        await model_usage(store, ["p"], "day", 3),
    )
    assert hours.keys() == days.keys()
    views += [(hours[m], days[m]) for m in hours]
    for hour_rows, day_rows in views:
        want = by_day(hour_rows)
        got = {r.start_ms // DAY_MS: summed([r]) for r in day_rows}
        for day, figures in got.items():
            assert figures == want.get(day, (0, 0, 0, 0.0, 0)), (day, figures, want)


async def test_a_day_before_any_roll_up_is_its_current_hour(state: SharedState) -> None:
    await request(state, tin=10, tout=5, cost=300)
    pool, client = prefixes(state)
    hour = await marker(state, pool)
    assert await state.handle.client.exists(f"{pool}:u:d:{hour // 24}") == 0, "nothing rolled yet"
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "day", 2)) == (1, 10, 5, 0.0003, 0)
    assert summed(await client_usage(store, "c", "day", 2)) == (1, 10, 5, 0.0003, 0)
    assert await marker(state, client) == hour
    await assert_days_are_their_hours(state)


async def test_the_next_hour_rolls_the_last_one_into_its_day(state: SharedState) -> None:
    await request(state, tin=10, tout=5, cost=300)
    earlier = await move_back(state, 1)  # that request was an hour ago
    await request(state, tin=7, tout=1, cost=100)
    pool, client = prefixes(state)
    redis = state.handle.client
    for prefix, field in ((pool, "a|up-model:in"), (client, "a:alias-1:in")):
        assert await marker(state, prefix) == earlier + 1
        assert await redis.hget(f"{prefix}:u:d:{earlier // 24}", field) == "10"
        # a rolled-up hour keeps the 8 days of an hour bucket, from its end
        ttl = await redis.pttl(f"{prefix}:u:h:{earlier}")
        assert 0 < ttl <= 8 * DAY_MS
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "day", 2)) == (2, 17, 6, 0.0004, 0)
    assert summed(await client_usage(store, "c", "day", 2)) == (2, 17, 6, 0.0004, 0)
    hours = await key_usage(store, "p", "a", "hour", 4)
    assert [r.requests for r in hours if r.start_ms == earlier * HOUR_MS] == [1]
    assert summed(hours)[0] == 2
    await assert_days_are_their_hours(state)


async def test_a_late_record_landing_in_a_later_hour_rolls_the_last_one_up(
    state: SharedState,
) -> None:
    """Usage of an outage flushed when Redis is back: counted in the hour it was counted in,
    after the marker's hour is rolled into its day."""
    await request(state, tin=10, tout=5, cost=300)
    earlier = await move_back(state, 2)  # Redis's last usage was two hours ago
    await late(state, tin=7, tout=1, cost=100, outcome="server_error")
    pool, client = prefixes(state)
    redis = state.handle.client
    assert await marker(state, pool) == earlier + 2
    assert await marker(state, client) == earlier, "a pool record leaves the client's usage alone"
    assert await redis.hget(f"{pool}:u:d:{earlier // 24}", "a|up-model:in") == "10"
    assert 0 < await redis.pttl(f"{pool}:u:h:{earlier}") <= 8 * DAY_MS
    assert await redis.pttl(f"{pool}:u:h:{earlier + 2}") > 399 * DAY_MS
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "day", 2)) == (2, 17, 6, 0.0004, 1)
    hours = await key_usage(store, "p", "a", "hour", 4)
    assert [r.requests for r in hours if r.start_ms == earlier * HOUR_MS] == [1]
    assert [r.requests for r in hours if r.start_ms == (earlier + 2) * HOUR_MS] == [1]
    for period, last in BOTH:
        models = await model_usage(store, ["p"], period, last)
        assert summed(models[("p", "up-model")]) == (2, 17, 6, 0.0004, 1), period
    await assert_days_are_their_hours(state)


async def test_a_late_record_behind_the_marker_counts_into_the_day_at_once(
    state: SharedState,
) -> None:
    await request(state, tin=3, tout=3)
    pool, _ = prefixes(state)
    redis = state.handle.client
    hour = await marker(state, pool)
    for field, value in (await redis.hgetall(f"{pool}:u:h:{hour}")).items():
        await redis.hincrby(f"{pool}:u:d:{hour // 24}", field, int(value))
    await redis.hset(f"{pool}:u:last", "h", hour + 1)  # a later hour was written already
    await late(state, tin=5, tout=5)
    assert await redis.hget(f"{pool}:u:d:{hour // 24}", "a|up-model:in") == "8"
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "hour", 2))[:3] == (2, 8, 8)
    assert summed(await key_usage(store, "p", "a", "day", 2))[:3] == (2, 8, 8)


async def test_hours_without_traffic_in_between_roll_up_nothing_twice(state: SharedState) -> None:
    await request(state, tin=10, tout=5)
    earlier = await move_back(state, 3)  # then three hours without a request
    await request(state, tin=7, tout=1)
    await request(state, tin=1, tout=1)
    pool, _ = prefixes(state)
    redis = state.handle.client
    assert await redis.hget(f"{pool}:u:d:{earlier // 24}", "a|up-model:req") == "1"
    for gap in (earlier + 1, earlier + 2):
        assert await redis.exists(f"{pool}:u:h:{gap}") == 0
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "day", 2))[:3] == (3, 18, 7)
    assert summed(await client_usage(store, "c", "day", 2))[:3] == (3, 18, 7)
    await assert_days_are_their_hours(state)


async def test_totals_per_key_model_and_client_are_summed_at_read_time(
    state: SharedState,
) -> None:
    await request(state, key="a", model="m:1", alias="x", tin=1, tout=1)
    await request(state, key="b", model="m:1", alias="y", tin=2, tout=2, outcome="server_error")
    await move_back(state, 2)
    await request(state, key="a", model="m|2", alias="x", tin=4, tout=4)
    await request(state, key="b", model="m:1", alias="x", tin=8, tout=8, outcome="refund")
    store = ConfigStore(state)
    for period, last in BOTH:
        a = summed(await key_usage(store, "p", "a", period, last))
        b = summed(await key_usage(store, "p", "b", period, last))
        assert a[:3] == (2, 5, 5) and b == (1, 2, 2, 0.0003, 1), (period, a, b)  # refund: none
        models = await model_usage(store, ["p"], period, last)
        assert {m: summed(rows)[:3] for (_, m), rows in models.items()} == {
            "m:1": (2, 3, 3),
            "m|2": (1, 4, 4),
        }
        # the client counts the refund as a request that failed and cost nothing
        client = summed(await client_usage(store, "c", period, last))
        assert client[:3] == (4, 7, 7) and client[4] == 1, (period, client)
    await assert_days_are_their_hours(state)


async def test_a_clock_that_steps_back_past_the_marker_counts_into_the_day_at_once(
    state: SharedState,
) -> None:
    await request(state, tin=3, tout=3)
    pool, client = prefixes(state)
    redis = state.handle.client
    hour = await marker(state, pool)
    for prefix in (pool, client):  # a later hour was written, and this one rolled up, already
        for field, value in (await redis.hgetall(f"{prefix}:u:h:{hour}")).items():
            await redis.hincrby(f"{prefix}:u:d:{hour // 24}", field, int(value))
        await redis.hset(f"{prefix}:u:last", "h", hour + 1)
    await request(state, tin=5, tout=5)
    assert await redis.hget(f"{pool}:u:d:{hour // 24}", "a|up-model:in") == "8"
    assert await redis.hget(f"{client}:u:d:{hour // 24}", "a:alias-1:in") == "8"
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "hour", 2))[:3] == (2, 8, 8)
    assert summed(await key_usage(store, "p", "a", "day", 2))[:3] == (2, 8, 8)
    assert summed(await client_usage(store, "c", "day", 2))[:3] == (2, 8, 8)


async def test_buckets_of_the_earlier_layout_are_read_and_never_rolled_up(
    state: SharedState,
) -> None:
    """Usage written before this layout: every field in both the hour and the day bucket."""
    await request(state, tin=1, tout=1)  # this layout: the marker sits on this hour
    pool, client = prefixes(state)
    redis = state.handle.client
    hour = await marker(state, pool)
    old: dict[str, dict[str, Any]] = {
        pool: {"k:a:req": 5, "k:a:in": 50, "m:up-model:req": 5, "m:up-model:in": 50},
        client: {"all:req": 5, "all:in": 50, "m:alias-1:req": 5, "m:alias-1:in": 50},
    }
    for prefix, fields in old.items():
        for bucket in (f"u:h:{hour}", f"u:d:{hour // 24}"):
            await redis.hset(f"{prefix}:{bucket}", mapping=fields)
    store = ConfigStore(state)
    for period, last in BOTH:
        key = summed(await key_usage(store, "p", "a", period, last))
        assert key[:2] == (6, 51), (period, key)
        models = await model_usage(store, ["p"], period, last)
        assert summed(models[("p", "up-model")])[:2] == (6, 51), period
        assert summed(await client_usage(store, "c", period, last))[:2] == (6, 51), period
    await move_back(state, 1)
    await request(state, tin=1, tout=1)  # rolls the hour up: only its fields of this layout
    assert await redis.hget(f"{pool}:u:d:{(hour - 1) // 24}", "k:a:req") in (None, "5")
    assert summed(await key_usage(store, "p", "a", "day", 2))[:2] == (7, 52)
    assert summed(await client_usage(store, "c", "day", 2))[:2] == (7, 52)


async def test_every_key_a_request_writes_expires(state: SharedState) -> None:
    """Nothing a request writes lives forever (the disabled-keys hash is the operator's)."""
    for outcome in ("ok", "server_error", "rate_limited", "client_error", "refund", "auth_error"):
        await request(state, outcome=outcome, cost=0 if outcome == "refund" else 200)
    late = state.client_settle_call(
        "c", "late-1", mode="late", tokens_in=3, tokens_out=3, cost_micros=50
    )
    assert int((await state.run([late]))[0]) == 1
    await move_back(state, 1)
    await request(state, key="b")  # "a" is disabled now
    redis = state.handle.client
    if state.handle.cluster:
        keys = await redis.keys(f"{state.prefix}*", target_nodes="all")
    else:
        keys = await redis.keys(f"{state.prefix}*")
    assert any(":u:d:" in k for k in keys) and any(":spend:" in k for k in keys)
    assert sum(":late:" in k for k in keys) == 1 and any(":flushed:" in k for k in keys)
    for key in keys:
        if key.endswith(":disabled"):
            continue
        assert await redis.pttl(key) > 0, key


async def test_a_batch_sent_twice_counts_once(state: SharedState) -> None:
    """A batch re-sent after a lost reply (or an outage) is applied once: usage_flush.lua is
    idempotent by batch id, and the buffer keeps the id until Redis confirms it."""
    hour = int((await state.handle.client.time())[0]) // 3600
    call = batch_call(state, "b-1", hour, "a|up-model:", 3, 30, 20, 500, 1)
    assert sorted(int(r) for r in await state.run([call, call])) == [0, 1]
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "hour", 2)) == (3, 30, 20, 0.0005, 1)
    bad = batch_call(state, "b-2", hour, "a|up-model:", 1, -5, 0, 0, 0)
    with pytest.raises(StateError, match="bad count"):  # a refused batch writes nothing
        await state.run([bad])
    assert summed(await key_usage(store, "p", "a", "hour", 2))[0] == 3


async def test_a_worker_adds_requests_up_before_sending_them(state: SharedState) -> None:
    """Many requests of one (key, model) in one interval are one field group of one call."""
    usage = UsageBuffer(state)
    for i in range(50):
        usage.pool("p", "a", "up-model", 2, 1, 10, i % 10 == 0)
        usage.client("c", "alias-1", 2, 1, 10, False)
    assert usage.pending_groups == 2
    assert await usage.flush() and usage.pending_groups == 0
    store = ConfigStore(state)
    assert summed(await key_usage(store, "p", "a", "hour", 2)) == (50, 100, 50, 0.0005, 5)
    assert summed(await client_usage(store, "c", "hour", 2)) == (50, 100, 50, 0.0005, 0)
