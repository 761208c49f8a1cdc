"""Conservation checks on the shared state, read from its raw keys through the gateway's handle.

The store is the embedded one or a real Redis (standalone or Cluster: keys are found by SCAN, on
every node); only keys under the gateway's own prefix (`gw.state.prefix`) are read, so tests
sharing one Redis under prefixes of their own never see each other's.

The layout is gateway/state/layout.py's and the headers of lua/acquire.lua, settle.lua,
client_admit.lua and client_settle.lua (`P = <prefix>:{pool:<provider>}`,
`C = <prefix>:{client:<id>}`):

    P:k:<key>   hash   `infl`: requests in flight on the key
    P:leases    zset   open leases -> expiry;  P:lease  hash  lease id -> `key|probe|estimate|...`
    P:win:<key> hash   the key's one-minute window (lua/lib/window.lua): one-second buckets
                       `r<j>` / `t<j>` (requests / tokens) and their running totals `n` / `s`
    P:u:h:<h>   hash   usage per hour, `<key>|<model>:<req|in|out|cost|err>`
    C:adm       hash   open admissions (held estimate and cost), `_cost`
    C:admz      zset   their expiries
    C:win       hash   the client's one-minute window (same layout)
    C:spend:d:<day>, C:spend:m:<yyyymm>   micro-dollars spent
    C:u:h:<h>   hash   usage per hour, `a:<alias>:<req|in|out|cost|err>`

Reading hour buckets only is exact: every write lands in one hour bucket (day buckets are a
roll-up of them). `assert_settled(gw)` is the invariant every request must leave behind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.runtime import Gateway
from gateway.state.layout import client_prefix, pool_prefix

__all__ = [
    "ClientLedger",
    "KeyLedger",
    "PoolLedger",
    "Window",
    "assert_settled",
    "client_ledger",
    "pool_ledger",
]


@dataclass(frozen=True, slots=True)
class Window:
    """A one-minute window: its running totals and the sums of its buckets (equal when sound)."""

    requests: int
    """The running request count `n`."""
    tokens: int
    """The running token total `s`."""
    bucket_requests: int
    bucket_tokens: int

    def problem(self) -> str:
        if (self.requests, self.tokens) != (self.bucket_requests, self.bucket_tokens):
            return (
                f"running totals n={self.requests} s={self.tokens} != buckets "
                f"{self.bucket_requests} requests, {self.bucket_tokens} tokens"
            )
        if self.requests < 0 or self.tokens < 0:
            return f"negative totals n={self.requests} s={self.tokens}"
        return ""


class _Windowed:
    """Requests and tokens of the ledger's `window`."""

    window: Window

    @property
    def requests(self) -> int:
        return self.window.requests

    @property
    def tokens(self) -> int:
        return self.window.tokens


@dataclass(frozen=True, slots=True)
class KeyLedger(_Windowed):
    key_id: str
    in_flight: int
    window: Window


@dataclass(frozen=True, slots=True)
class PoolLedger:
    provider: str
    leases: tuple[str, ...]
    lease_records: dict[str, str]
    keys: tuple[KeyLedger, ...]
    usage: Counter[str]
    """Metric (req, in, out, cost, err) -> total over the pool's keys and models."""

    @property
    def requests(self) -> int:
        """Requests in the windows of all the pool's keys."""
        return sum(k.requests for k in self.keys)

    @property
    def tokens(self) -> int:
        """Tokens in the windows of all the pool's keys."""
        return sum(k.tokens for k in self.keys)


@dataclass(frozen=True, slots=True)
class ClientLedger(_Windowed):
    client_id: str
    holds: dict[str, str]
    """Open admissions: request id -> `estimate|cost|spend keys|bucket`."""
    held_cost: int
    hold_expiries: tuple[str, ...]
    window: Window
    spend_day: int
    spend_month: int
    usage: Counter[str]
    """Metric (req, in, out, cost, err) -> total over the client's aliases."""


def _redis(gw: Gateway) -> Any:
    return gw.state.handle.client


async def _matching(redis: Any, pattern: str) -> list[str]:
    """Every key matching `pattern` (SCAN, not KEYS: a Cluster client scans each node)."""
    return [key async for key in redis.scan_iter(match=pattern, count=1000)]


async def _window(redis: Any, name: str) -> Window:
    fields = {str(k): int(v) for k, v in (await redis.hgetall(name)).items()}
    return Window(
        requests=fields.get("n", 0),
        tokens=fields.get("s", 0),
        bucket_requests=sum(v for k, v in fields.items() if k.startswith("r")),
        bucket_tokens=sum(v for k, v in fields.items() if k.startswith("t")),
    )


async def _usage(redis: Any, prefix: str) -> Counter[str]:
    totals: Counter[str] = Counter()
    for bucket in await _matching(redis, f"{prefix}:u:h:*"):
        for name, value in (await redis.hgetall(bucket)).items():
            totals[name.rsplit(":", 1)[1]] += int(value)
    return totals


async def _sum_of(redis: Any, pattern: str) -> int:
    total = 0
    for key in await _matching(redis, pattern):
        total += int(await redis.get(key) or 0)
    return total


async def pool_ledger(gw: Gateway, provider: str) -> PoolLedger:
    await gw.usage.flush()  # the usage this worker counted, in Redis now rather than within 1 s
    redis = _redis(gw)
    p = pool_prefix(gw.state.prefix, provider)
    keys = []
    for key in gw.table.pools[provider].keys:
        keys.append(
            KeyLedger(
                key_id=key.id,
                in_flight=int(await redis.hget(f"{p}:k:{key.id}", "infl") or 0),
                window=await _window(redis, f"{p}:win:{key.id}"),
            )
        )
    return PoolLedger(
        provider=provider,
        leases=tuple(await redis.zrange(f"{p}:leases", 0, -1)),
        lease_records=dict(await redis.hgetall(f"{p}:lease")),
        keys=tuple(keys),
        usage=await _usage(redis, p),
    )


async def client_ledger(gw: Gateway, client_id: str) -> ClientLedger:
    await gw.usage.flush()
    redis = _redis(gw)
    c = client_prefix(gw.state.prefix, client_id)
    adm = dict(await redis.hgetall(f"{c}:adm"))
    return ClientLedger(
        client_id=client_id,
        holds={k: v for k, v in adm.items() if k != "_cost"},
        held_cost=int(adm.get("_cost", 0)),
        hold_expiries=tuple(await redis.zrange(f"{c}:admz", 0, -1)),
        window=await _window(redis, f"{c}:win"),
        spend_day=await _sum_of(redis, f"{c}:spend:d:*"),
        spend_month=await _sum_of(redis, f"{c}:spend:m:*"),
        usage=await _usage(redis, c),
    )


async def assert_settled(gw: Gateway) -> None:
    """Nothing is held any more: no request in flight, no lease, no admission hold.

    Also that every window's running totals equal the sums of its buckets (a settle that
    replaced an estimate twice, or forgot one, shows there).
    """
    problems: list[str] = []
    for provider in gw.table.pools:
        pool = await pool_ledger(gw, provider)
        if pool.leases or pool.lease_records:
            problems.append(f"{provider}: leases still open: {sorted(pool.lease_records)}")
        for key in pool.keys:
            if key.in_flight != 0:
                problems.append(f"{provider}/{key.key_id}: in flight {key.in_flight}")
            if problem := key.window.problem():
                problems.append(f"{provider}/{key.key_id}: window {problem}")
    for client in gw.cfg.clients:
        ledger = await client_ledger(gw, client.id)
        if ledger.holds or ledger.hold_expiries or ledger.held_cost:
            problems.append(
                f"client {client.id}: admission holds remain: {ledger.holds} "
                f"(held cost {ledger.held_cost})"
            )
        if problem := ledger.window.problem():
            problems.append(f"client {client.id}: window {problem}")
    assert not problems, "not settled:\n  " + "\n  ".join(problems)
