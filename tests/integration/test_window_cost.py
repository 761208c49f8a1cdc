"""A window's cost does not grow with the traffic it holds: memory and refusals are O(1).

The windows used to be a log with one member per request: a refused TPM request read the whole
log, so a client sending refused requests could push Redis (and so the fleet) into overload.
Counted, not timed: the Redis commands a refusal runs (`INFO commandstats`, standalone Redis)
and the fields a window keeps, after a few requests and after thousands.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.state.connection import open_redis
from gateway.state.layout import client_prefix
from gateway.state.store import SharedState

_ids = itertools.count()


@pytest.fixture
async def standalone(redis_url: str) -> AsyncIterator[SharedState]:
    store = SharedState(open_redis(redis_url, timeout_s=5.0), prefix=f"wc{uuid.uuid4().hex[:8]}")
    await store.load_scripts()
    yield store
    await store.aclose()


async def _admit(s: SharedState, client: str, *, tokens: int, tpm: int) -> Any:
    call = s.client_admit_call(
        client, f"r{next(_ids)}", rpm=0, tpm=tpm, tokens=tokens, cost_micros=0,
        budget_day_micros=0, budget_month_micros=0, hold_ttl_ms=60_000,
    )  # fmt: skip
    return s.parse_admit((await s.run([call]))[0])


async def _commands(s: SharedState) -> int:
    """Commands Redis ran so far, scripts' inner commands included."""
    stats = await s.handle.client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def _refusal_cost(s: SharedState, client: str, held: int) -> tuple[int, int]:
    """Fill `client`'s window with `held` admissions, then count one refused TPM request's
    commands and the window's fields."""
    for _ in range(held):
        assert (await _admit(s, client, tokens=1, tpm=held)).admitted
    costs = []
    for _ in range(3):  # the least of three: at most one can be a second's first (it trims)
        before = await _commands(s)
        refused = await _admit(s, client, tokens=1, tpm=held)
        assert not refused.admitted and refused.reason == "tpm"
        assert 0 < refused.wait_ms <= 61_000
        costs.append(await _commands(s) - before - 1)  # less the EVALSHA itself
    cost = min(costs)
    fields = await s.handle.client.hlen(f"{client_prefix(s.prefix, client)}:win")
    return cost, fields


async def test_a_refusal_costs_the_same_with_ten_or_three_thousand_requests_held(
    standalone: SharedState,
) -> None:
    small = await _refusal_cost(standalone, "few", 10)
    large = await _refusal_cost(standalone, "many", 3000)
    assert large[0] == small[0], (small, large)
    # at most 2 x 61 buckets + head, count and sum, however many requests it holds
    assert small[1] <= 125 and large[1] <= 125, (small, large)
