"""Property: any interleaving of acquire / settle / duplicate settle / lease expiry keeps the books.

After every step, against real Redis and the embedded store:
- in-flight per key equals the leases the model holds live on it, and is never negative;
- the token window's running sum equals the sum of its entries and the model's sum, where a
  live or swept lease counts its estimate, a settled one its real tokens (or the estimate when
  unknown) and a refunded one nothing;
- settle answers "settled now" exactly once per live lease.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.state.connection import open_redis
from gateway.state.layout import pool_prefix
from gateway.state.store import Lease, SharedState

KEYS: list[tuple[str | int, ...]] = [("a", 0, 0, 0, 1), ("b", 0, 0, 0, 1)]
BREAKER = (1000, 100, 1000, 60_000, 1000, 1000)

acquire_op = st.tuples(st.just("acquire"), st.integers(0, 500))
settle_op = st.tuples(
    st.just("settle"),
    st.integers(0, 50),
    st.integers(-1, 400),
    st.sampled_from(["ok", "server_error", "client_error", "cancelled", "refund", "rate_limited"]),
)
expire_op = st.tuples(st.just("expire"), st.integers(0, 50))
programs = st.lists(st.one_of(acquire_op, settle_op, expire_op), min_size=1, max_size=14)


@dataclass
class Model:
    key: str
    est: int
    status: str = "live"  # live | expired (not yet swept) | swept | settled | refunded
    tokens: int = -1

    def window_tokens(self) -> int:
        if self.status == "refunded":
            return 0
        if self.status == "settled" and self.tokens >= 0:
            return self.tokens
        return self.est


async def run_program(url: str | None, program: list[tuple[object, ...]]) -> None:
    s = SharedState(open_redis(url), prefix=f"prop{uuid.uuid4().hex[:10]}")
    await s.load_scripts()
    p = pool_prefix(s.prefix, "p")
    redis = s.handle.client
    leases: list[tuple[Lease, Model]] = []
    try:
        for step, op in enumerate(program):
            if op[0] == "acquire":
                est = int(op[1])  # type: ignore[call-overload]
                lease_id = f"l{step}"
                call = s.acquire_call(
                    "p",
                    lease_id,
                    tokens=est,
                    lease_ttl_ms=600_000,
                    strategy="least-utilised",
                    random=step,
                    candidates=KEYS,
                    model="m",
                )
                got = s.parse_acquire("p", lease_id, (await s.run([call]))[0])
                assert isinstance(got, Lease)
                for old, m in leases:  # an acquire may sweep expired leases (acquire.lua)
                    if m.status == "expired" and not await redis.hexists(f"{p}:lease", old.id):
                        m.status = "swept"
                leases.append((got, Model(key=got.key_id, est=est)))
            elif op[0] == "settle" and leases:
                lease, m = leases[int(op[1]) % len(leases)]  # type: ignore[call-overload]
                tokens, outcome = int(op[2]), str(op[3])  # type: ignore[call-overload]
                args = (outcome, tokens, 0, -1, -1, -1, -1, *BREAKER, 0, "", "m")
                reply = (await s.run([s.settle_call(lease, args)]))[0]
                was_open = m.status in ("live", "expired")
                assert int(reply[0]) == (1 if was_open else 0)
                if was_open:
                    m.status = "refunded" if outcome == "refund" else "settled"
                    m.tokens = tokens
            elif op[0] == "expire" and leases:
                lease, m = leases[int(op[1]) % len(leases)]  # type: ignore[call-overload]
                if m.status == "live":
                    # stand-in for the clock passing the lease's expiry: the lease record and
                    # everything it holds stay; only its deadline moves to the past
                    await redis.zadd(f"{p}:leases", {lease.id: 0}, xx=True)
                    m.status = "expired"
            for key in ("a", "b"):
                infl = int(await redis.hget(f"{p}:k:{key}", "infl") or 0)
                held = sum(1 for _, m in leases if m.key == key and m.status in ("live", "expired"))
                assert infl == held >= 0
                window = {k: int(v) for k, v in (await redis.hgetall(f"{p}:win:{key}")).items()}
                running = window.get("s", 0)
                assert running == sum(v for k, v in window.items() if k.startswith("t"))
                assert running == sum(m.window_tokens() for _, m in leases if m.key == key)
    finally:
        await s.aclose()


@pytest.mark.parametrize("backend", ["standalone", "embedded"])
def test_books_balance_under_any_interleaving(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if backend == "standalone" else None

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(programs)
    def check(program: list[tuple[object, ...]]) -> None:
        asyncio.run(run_program(url, program))

    check()
