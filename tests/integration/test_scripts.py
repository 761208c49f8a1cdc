"""The Lua script suite, run on standalone Redis, a three-node Redis Cluster and the embedded store."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import pytest

from gateway.state.layout import pool_prefix
from gateway.state.scripts import USAGE_FLUSH
from gateway.state.store import Lease, NoKey, ScriptCall, SharedState, StateError

BREAKER = (3, 50, 100, 60_000, 200, 10_000)  # 3 consecutive failures open it; 200 ms first period
_ids = itertools.count()


def rid() -> str:
    return f"r{next(_ids)}"


async def acquire(
    s: SharedState,
    cands: list[tuple[str | int, ...]],
    *,
    lease: str | None = None,
    tokens: int = 10,
    ttl: int = 60_000,
    strategy: str = "least-utilised",
    rnd: int = 0,
    model: str = "m",
) -> Lease | NoKey:
    lease = lease or rid()
    call = s.acquire_call(
        "p",
        lease,
        tokens=tokens,
        lease_ttl_ms=ttl,
        strategy=strategy,
        random=rnd,
        candidates=cands,
        model=model,
    )
    return s.parse_acquire("p", lease, (await s.run([call]))[0])


async def settle(
    s: SharedState,
    lease: Lease,
    outcome: str = "ok",
    *,
    tokens: int = -1,
    cooldown: int = 0,
    learned: tuple[int, int, int] = (-1, -1, -1),
    model: str = "m",
) -> Any:
    args = (outcome, tokens, cooldown, *learned, 5, *BREAKER, 0, "why", model)
    return (await s.run([s.settle_call(lease, args)]))[0]


async def key_state(s: SharedState, key_id: str) -> dict[str, str]:
    result: dict[str, str] = await s.handle.client.hgetall(
        f"{pool_prefix(s.prefix, 'p')}:k:{key_id}"
    )
    return result


async def window_sum(s: SharedState, key_id: str) -> int:
    return int(await s.handle.client.hget(f"{pool_prefix(s.prefix, 'p')}:win:{key_id}", "s") or 0)


async def test_rpm_is_exact_and_tells_when_a_key_frees_up(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 3, 0, 0, 1), ("b", 2, 0, 0, 1)]
    got = [await acquire(state, cands, rnd=i) for i in range(6)]
    leases = [g for g in got if isinstance(g, Lease)]
    assert len(leases) == 5
    assert sorted(lease.key_id for lease in leases) == ["a", "a", "a", "b", "b"]
    last = got[-1]
    assert isinstance(last, NoKey)
    assert 59_000 <= last.wait_ms <= 61_000  # a one-second bucket leaves 60 to 61 s on
    assert "a=rpm" in last.skipped and "b=rpm" in last.skipped


async def test_tpm_reserves_the_estimate_and_settle_replaces_it(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 100, 0, 1)]
    first = await acquire(state, cands, tokens=60)
    assert isinstance(first, Lease)
    assert isinstance(await acquire(state, cands, tokens=60), NoKey)  # 60 + 60 > 100
    await settle(state, first, tokens=15)
    assert await window_sum(state, "a") == 15
    assert isinstance(await acquire(state, cands, tokens=60), Lease)  # 15 + 60 <= 100
    assert await window_sum(state, "a") == 75


async def test_concurrency_cap_counts_leases_in_flight(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 2, 1)]
    one, two = await acquire(state, cands), await acquire(state, cands)
    assert isinstance(one, Lease) and isinstance(two, Lease)
    blocked = await acquire(state, cands)
    assert isinstance(blocked, NoKey) and "a=concurrency" in blocked.skipped
    await settle(state, one)
    assert isinstance(await acquire(state, cands), Lease)


async def test_settle_is_idempotent_by_lease(state: SharedState) -> None:
    lease = await acquire(state, [("a", 0, 0, 0, 1)])
    assert isinstance(lease, Lease)
    first = await settle(state, lease, "server_error", tokens=5)
    again = await settle(state, lease, "server_error", tokens=5)
    assert int(first[0]) == 1 and int(again[0]) == 0
    st = await key_state(state, "a")
    assert st["infl"] == "0"
    assert st["br_fails"] == "1", "the retried settle must not count a second failure"


async def test_acquire_retried_with_the_same_lease_id_reserves_once(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 5, 0, 0, 1)]
    one = await acquire(state, cands, lease="same")
    two = await acquire(state, cands, lease="same")
    assert one == two
    assert (await key_state(state, "a"))["infl"] == "1"


async def test_429_cools_the_key_down_and_traffic_moves(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1), ("b", 0, 0, 0, 1)]
    lease = await acquire(state, cands, strategy="priority")
    assert isinstance(lease, Lease) and lease.key_id == "a"
    await settle(state, lease, "rate_limited", cooldown=300)
    after = [await acquire(state, cands, strategy="priority") for _ in range(3)]
    assert all(isinstance(x, Lease) and x.key_id == "b" for x in after)
    only_a = await acquire(state, [("a", 0, 0, 0, 1)])
    assert (
        isinstance(only_a, NoKey) and "a=cooldown" in only_a.skipped and 0 < only_a.wait_ms <= 300
    )
    await asyncio.sleep(0.35)
    assert isinstance(await acquire(state, [("a", 0, 0, 0, 1)]), Lease)


async def test_auth_error_disables_the_key(state: SharedState) -> None:
    lease = await acquire(state, [("a", 0, 0, 0, 1)])
    assert isinstance(lease, Lease)
    await settle(state, lease, "auth_error")
    refused = await acquire(state, [("a", 0, 0, 0, 1)])
    assert isinstance(refused, NoKey) and refused.skipped == "a=disabled" and refused.wait_ms == -1


async def test_breaker_opens_admits_exactly_one_probe_and_closes_on_success(
    state: SharedState,
) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1)]
    for _ in range(3):
        lease = await acquire(state, cands)
        assert isinstance(lease, Lease)
        await settle(state, lease, "server_error")
    assert (await key_state(state, "a"))["br"] == "open"
    blocked = await acquire(state, cands)
    assert isinstance(blocked, NoKey) and "breaker_open" in blocked.skipped
    await asyncio.sleep(0.3)  # the first open period is 200 ms (+ up to 20% jitter)
    probes = [await acquire(state, cands) for _ in range(5)]
    admitted = [p for p in probes if isinstance(p, Lease)]
    assert len(admitted) == 1 and admitted[0].probe
    # a probe failure reopens for twice as long
    await settle(state, admitted[0], "server_error")
    st = await key_state(state, "a")
    assert st["br"] == "open" and st["br_opens"] == "2"
    await asyncio.sleep(0.5)
    probe = await acquire(state, cands)
    assert isinstance(probe, Lease) and probe.probe
    await settle(state, probe, "ok")
    assert (await key_state(state, "a"))["br"] == "closed"
    assert all(isinstance(x, Lease) for x in [await acquire(state, cands) for _ in range(3)])


async def test_a_probe_whose_replica_died_is_replaced_after_its_lease_expires(
    state: SharedState,
) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1)]
    for _ in range(3):
        lease = await acquire(state, cands)
        assert isinstance(lease, Lease)
        await settle(state, lease, "server_error")
    await asyncio.sleep(0.3)
    probe = await acquire(state, cands, ttl=100)  # never settled: its replica "died"
    assert isinstance(probe, Lease) and probe.probe
    assert isinstance(await acquire(state, cands), NoKey)
    await asyncio.sleep(0.15)
    second = await acquire(state, cands)
    assert isinstance(second, Lease) and second.probe


async def test_expired_leases_are_swept_so_nothing_leaks(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 1, 1)]
    lost = await acquire(state, cands, ttl=50)
    assert isinstance(lost, Lease)
    assert isinstance(await acquire(state, cands), NoKey)
    await asyncio.sleep(0.1)
    assert isinstance(await acquire(state, cands), Lease)
    assert (await key_state(state, "a"))["infl"] == "1"
    assert int((await settle(state, lost))[0]) == 0, "a swept lease settles as a no-op"


async def test_learned_upstream_quota_steers_away_before_a_429(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1)]
    lease = await acquire(state, cands)
    assert isinstance(lease, Lease)
    await settle(state, lease, learned=(0, 1000, 400))
    refused = await acquire(state, cands)
    assert isinstance(refused, NoKey) and "upstream_quota" in refused.skipped
    await asyncio.sleep(0.45)
    assert isinstance(await acquire(state, cands), Lease)


async def test_refund_forgets_the_request(state: SharedState) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 1, 0, 0, 1)]
    lease = await acquire(state, cands, tokens=40)
    assert isinstance(lease, Lease)
    await settle(state, lease, "refund")
    assert await window_sum(state, "a") == 0
    assert isinstance(await acquire(state, cands), Lease), "a refunded request used no rpm"


async def test_bad_arguments_fail_before_any_write(state: SharedState) -> None:
    before = await _all_keys(state)
    bad = state.acquire_call(
        "p",
        "x",
        tokens=-5,
        lease_ttl_ms=1000,
        strategy="least-utilised",
        random=0,
        candidates=[("a", 0, 0, 0, 1)],
        model="m",
    )
    with pytest.raises(StateError):
        await state.run([bad])
    wrong_strategy = state.acquire_call(
        "p",
        "x",
        tokens=1,
        lease_ttl_ms=1000,
        strategy="cheapest",
        random=0,
        candidates=[("a", 0, 0, 0, 1)],
        model="m",
    )
    with pytest.raises(StateError):
        await state.run([wrong_strategy])
    bogus = state.settle_call(
        Lease("p", "x", "a", False),
        ("exploded", -1, 0, -1, -1, -1, -1, *BREAKER, 0, "", "m"),
    )
    with pytest.raises(StateError):
        await state.run([bogus])
    admit = state.client_admit_call(
        "c",
        "x",
        rpm=-1,
        tpm=0,
        tokens=-1,
        cost_micros=0,
        budget_day_micros=0,
        budget_month_micros=0,
        hold_ttl_ms=0,
    )
    with pytest.raises(StateError):
        await state.run([admit])
    for bad_usage in (
        flush_call(state, "x", 1, "a|m:", -1, 0, 0, 0, 0),  # counts are never negative
        flush_call(state, "x", 1, "", 1, 0, 0, 0, 0),  # a group names its key and model
        ScriptCall(USAGE_FLUSH, ("k",), ("p", "x", "^", 2, 1, "a|m:", 1, 0, 0, 0, 0)),  # n lies
    ):
        with pytest.raises(StateError):
            await state.run([bad_usage])
    assert await _all_keys(state) == before


async def _all_keys(state: SharedState) -> set[str]:
    client = state.handle.client
    if state.handle.cluster:
        keys = await client.keys(f"{state.prefix}*", target_nodes="all")
    else:
        keys = await client.keys(f"{state.prefix}*")
    return set(keys)


async def _dump(state: SharedState) -> dict[str, tuple[str, Any]]:
    """Every key of the prefix with its type and value, to diff what a call wrote."""
    client = state.handle.client
    found: dict[str, tuple[str, Any]] = {}
    for key in await _all_keys(state):
        kind = await client.type(key)
        if kind == "hash":
            value: Any = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        else:
            value = await client.get(key)
        found[key] = (kind, value)
    return found


def flush_call(
    state: SharedState, batch_id: str, hour: int, group: str, *counts: int, provider: str = "p"
) -> ScriptCall:
    """usage_flush.lua: one field group of a worker's usage batch for a pool."""
    prefix = pool_prefix(state.prefix, provider)
    args = (prefix, batch_id, "^[^:|]*|", 1, hour, group, *counts)
    return ScriptCall(USAGE_FLUSH, (f"{prefix}:u:last",), args)


def hour_totals(dump: dict[str, tuple[str, Any]], prefix: str) -> dict[str, int]:
    """Each usage field summed over the pool's hour buckets (an hour boundary may fall between)."""
    totals: dict[str, int] = {}
    for key, (_, value) in dump.items():
        if key.startswith(f"{prefix}:u:h:"):
            for field, n in value.items():
                totals[field] = totals.get(field, 0) + int(n)
    return totals


async def test_usage_flush_counts_once_and_writes_nothing_but_usage(state: SharedState) -> None:
    """A worker's usage batch, sent twice (a lost reply), adds to the usage once and leaves the
    key's lease, windows and breaker alone; settle.lua itself writes no usage."""
    cands: list[tuple[str | int, ...]] = [("a", 5, 1000, 3, 1)]
    done = await acquire(state, cands, tokens=5)
    assert isinstance(done, Lease)
    await settle(state, done, "server_error", tokens=5)  # a breaker run, windows
    assert isinstance(await acquire(state, cands), Lease)  # and a lease in flight
    p = pool_prefix(state.prefix, "p")
    before = await _dump(state)
    assert not any(":u:" in k for k in before), "settle.lua wrote usage"
    hour = int((await state.handle.client.time())[0]) // 3600
    batch = flush_call(state, "w1-7", hour, "a|m:", 2, 10, 5, 300, 1)
    replies = [(await state.run([batch]))[0] for _ in range(2)]
    assert [int(r) for r in replies] == [1, 0]
    after = await _dump(state)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    usage = re.compile(rf"{re.escape(p)}:(u:h:\d+|u:last|flushed:w1-7)")
    assert changed and all(usage.fullmatch(k) for k in changed), changed
    assert 0 < await state.handle.client.pttl(f"{p}:flushed:w1-7") <= 2 * 86_400_000
    assert hour_totals(after, p) == {
        "a|m:req": 2, "a|m:in": 10, "a|m:out": 5, "a|m:cost": 300, "a|m:err": 1,
    }  # fmt: skip
    assert await state.handle.client.pttl(f"{p}:u:h:{hour}") > 399 * 86_400_000


async def admit(
    state: SharedState,
    req: str,
    *,
    rpm: int = 0,
    tpm: int = 0,
    tokens: int = 10,
    cost: int = 0,
    day: int = 0,
) -> Any:
    call = state.client_admit_call(
        "c",
        req,
        rpm=rpm,
        tpm=tpm,
        tokens=tokens,
        cost_micros=cost,
        budget_day_micros=day,
        budget_month_micros=0,
        hold_ttl_ms=60_000,
    )
    return state.parse_admit((await state.run([call]))[0])


async def client_settle(
    state: SharedState, req: str, mode: str, tin: int = -1, tout: int = -1, cost: int = -1
) -> int:
    call = state.client_settle_call(
        "c", req, mode=mode, tokens_in=tin, tokens_out=tout, cost_micros=cost
    )
    return int((await state.run([call]))[0])


async def test_client_rpm_window_is_exact_and_rejections_consume_nothing(
    state: SharedState,
) -> None:
    results = [await admit(state, rid(), rpm=3) for _ in range(5)]
    assert [r.admitted for r in results] == [True, True, True, False, False]
    assert results[-1].reason == "rpm" and 59_000 <= results[-1].wait_ms <= 61_000


async def test_client_refund_gives_the_slot_back(state: SharedState) -> None:
    first = rid()
    assert (await admit(state, first, rpm=1)).admitted
    assert not (await admit(state, rid(), rpm=1)).admitted
    assert await client_settle(state, first, "refund") == 1
    assert await client_settle(state, first, "refund") == 0
    assert (await admit(state, rid(), rpm=1)).admitted


async def test_client_budget_holds_the_estimate_until_settled(state: SharedState) -> None:
    a, b = rid(), rid()
    assert (await admit(state, a, cost=600, day=1000)).admitted
    held = await admit(state, b, cost=600, day=1000)
    assert not held.admitted and held.reason == "budget_day"
    assert await client_settle(state, a, "charge", tin=10, tout=10, cost=100) == 1
    assert (await admit(state, b, cost=600, day=1000)).admitted  # 100 spent + 600 <= 1000


async def test_a_stream_without_usage_is_charged_its_reservation(state: SharedState) -> None:
    req = rid()
    assert (await admit(state, req, tpm=100, tokens=70, cost=500, day=10_000)).admitted
    await client_settle(state, req, "charge")  # tokens unknown, cost unknown
    refused = await admit(state, rid(), tpm=100, tokens=40)
    assert not refused.admitted and refused.reason == "tpm"
    assert not (await admit(state, rid(), tpm=100, tokens=101)).admitted


async def test_provider_model_breaker_opens_when_every_key_fails_for_that_model(
    state: SharedState,
) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1), ("b", 0, 0, 0, 1), ("c", 0, 0, 0, 1)]
    # failures spread over the keys: no key reaches 3 consecutive failures, the model does
    for i in range(3):  # the caller's order spreads them (gateway/routing/sampling.py)
        lease = await acquire(state, cands[i:] + cands[:i], model="down-model")
        assert isinstance(lease, Lease)
        await settle(state, lease, "server_error", model="down-model")
    states = [await key_state(state, k) for k in "abc"]
    assert all(st.get("br", "closed") == "closed" for st in states)
    refused = await acquire(state, cands, model="down-model")
    assert isinstance(refused, NoKey) and refused.skipped == "model=breaker_open"
    assert 0 < refused.wait_ms <= 240
    # the same keys still serve another model
    assert isinstance(await acquire(state, cands, model="up-model"), Lease)
    await asyncio.sleep(0.3)
    probes = [await acquire(state, cands, model="down-model") for _ in range(3)]
    admitted = [p for p in probes if isinstance(p, Lease)]
    assert len(admitted) == 1, "exactly one probe for the model"
    await settle(state, admitted[0], "ok", model="down-model")
    assert all(
        isinstance(x, Lease)
        for x in [await acquire(state, cands, model="down-model") for _ in range(3)]
    )


async def test_one_bad_key_never_opens_the_model_breaker(state: SharedState) -> None:
    for _ in range(5):  # only key "a" fails, again and again
        lease = await acquire(state, [("a", 0, 0, 0, 1)], model="shared-model")
        if isinstance(lease, Lease):
            await settle(state, lease, "server_error", model="shared-model")
    assert (await key_state(state, "a"))["br"] == "open"
    other = await acquire(state, [("b", 0, 0, 0, 1)], model="shared-model")
    assert isinstance(other, Lease), "the model still serves through its healthy keys"


async def test_a_disabled_key_among_others_is_skipped_and_the_rest_serve(
    state: SharedState,
) -> None:
    cands: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1), ("b", 0, 0, 0, 1), ("c", 0, 0, 0, 1)]
    lease = await acquire(state, [("b", 0, 0, 0, 1)])
    assert isinstance(lease, Lease)
    await settle(state, lease, "auth_error")
    chosen = {g.key_id for g in [await acquire(state, cands, rnd=i) for i in range(6)]
              if isinstance(g, Lease)}  # fmt: skip
    assert chosen == {"a", "c"}
    refused = await acquire(state, [("b", 0, 0, 0, 1), ("a", 0, 0, 1, 1)])
    assert isinstance(refused, NoKey)
    assert refused.skipped == "b=disabled,a=concurrency"


async def test_a_key_without_limits_keeps_an_exact_window(state: SharedState) -> None:
    """A key without limits still keeps its window, so a limit set later sees the last minute;
    buckets older than the window leave it (with their tokens) when the key is next touched."""
    unlimited: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1)]
    p = pool_prefix(state.prefix, "p")
    redis = state.handle.client
    now_s = int((await state.handle.client.time())[0])
    old = now_s - 61  # a bucket that has just left the window (61 one-second buckets)
    await redis.hset(
        f"{p}:win:a", mapping={"h": old, "n": 1, "s": 500, f"r{old % 61}": 1, f"t{old % 61}": 500}
    )
    for _ in range(2):
        assert isinstance(await acquire(state, unlimited, tokens=7), Lease)
    assert await redis.hget(f"{p}:win:a", f"t{old % 61}") in (None, "7", "14")
    assert int(await redis.hget(f"{p}:win:a", "n")) == 2
    assert await window_sum(state, "a") == 14
    limited = await acquire(state, [("a", 2, 0, 0, 1)])
    assert isinstance(limited, NoKey) and limited.skipped == "a=rpm"
    assert isinstance(await acquire(state, [("a", 0, 20, 0, 1)], tokens=6), Lease)
    refused = await acquire(state, [("a", 0, 20, 0, 1)], tokens=1)
    assert isinstance(refused, NoKey) and refused.skipped == "a=tpm"
