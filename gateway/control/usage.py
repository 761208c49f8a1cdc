"""Usage and live key state, read from the hashes acquire/settle and client_settle write.

    <prefix>:{pool:<provider>}:u:h:<epoch hour> / u:d:<epoch day>   fields k:<key id>:<metric>,
                                                                    m:<upstream model>:<metric>
    <prefix>:{client:<id>}:u:h:<epoch hour> / u:d:<epoch day>       fields all:<metric>,
                                                                    m:<alias>:<metric>
    metric: req | in | out | cost (micro-dollars) | err

Retention is the scripts': hourly buckets live 8 days, daily buckets 400 days.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.control.store import ConfigStore
from gateway.state.layout import client_prefix, pool_prefix

__all__ = [
    "MAX_BUCKETS",
    "KeyLiveState",
    "Period",
    "UsageRow",
    "client_usage",
    "key_live_state",
    "key_usage",
    "model_usage",
]

Period = Literal["hour", "day"]
_SPAN_MS = {"hour": 3_600_000, "day": 86_400_000}
_TAG = {"hour": "h", "day": "d"}
MAX_BUCKETS = {"hour": 192, "day": 400}


@dataclass(frozen=True, slots=True)
class UsageRow:
    start_ms: int
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    errors: int


def _buckets(period: Period, last: int, now_ms: int) -> list[int]:
    current = now_ms // _SPAN_MS[period]
    return list(range(current - last + 1, current + 1))


def _row(period: Period, bucket: int, fields: Mapping[str, str], who: str) -> UsageRow:
    def get(metric: str) -> int:
        return int(fields.get(f"{who}:{metric}", 0))

    return UsageRow(
        start_ms=bucket * _SPAN_MS[period],
        requests=get("req"),
        tokens_in=get("in"),
        tokens_out=get("out"),
        cost_usd=get("cost") / 1_000_000,
        errors=get("err"),
    )


async def _rows(
    store: ConfigStore, hash_prefix: str, who: str, period: Period, last: int
) -> list[UsageRow]:
    buckets = _buckets(period, last, await store.server_time_ms())
    tables = await store.hashes([f"{hash_prefix}:u:{_TAG[period]}:{b}" for b in buckets])
    return [_row(period, b, t, who) for b, t in zip(buckets, tables, strict=True)]


async def client_usage(
    store: ConfigStore, client_id: str, period: Period, last: int
) -> list[UsageRow]:
    """One client key's usage, oldest bucket first (every model it called)."""
    return await _rows(store, client_prefix(store.state.prefix, client_id), "all", period, last)


async def key_usage(
    store: ConfigStore, provider: str, key_id: str, period: Period, last: int
) -> list[UsageRow]:
    return await _rows(
        store, pool_prefix(store.state.prefix, provider), f"k:{key_id}", period, last
    )


async def model_usage(
    store: ConfigStore, providers: Iterable[str], period: Period, last: int
) -> dict[tuple[str, str], list[UsageRow]]:
    """(provider, upstream model) -> rows, for every model that has usage in the range."""
    buckets = _buckets(period, last, await store.server_time_ms())
    names: list[tuple[str, int, str]] = [
        (p, b, f"{pool_prefix(store.state.prefix, p)}:u:{_TAG[period]}:{b}")
        for p in providers
        for b in buckets
    ]
    tables = await store.hashes([n for _, _, n in names])
    found: dict[tuple[str, str], dict[int, Mapping[str, str]]] = {}
    for (provider, bucket, _), table in zip(names, tables, strict=True):
        for field in table:
            if field.startswith("m:") and field.endswith(":req"):
                model = field[2:-4]
                found.setdefault((provider, model), {})[bucket] = table
    return {
        (provider, model): [_row(period, b, seen.get(b, {}), f"m:{model}") for b in buckets]
        for (provider, model), seen in found.items()
    }


@dataclass(frozen=True, slots=True)
class KeyLiveState:
    """What acquire/settle know of one key right now (times in ms since the epoch)."""

    now_ms: int
    disabled: str | None
    in_flight: int
    cooldown_until_ms: int | None
    breaker: str
    breaker_until_ms: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    remaining_reset_ms: int | None
    latency_ms: int | None
    requests_last_minute: int

    @property
    def status(self) -> str:
        if self.disabled is not None:
            return "disabled"
        if self.breaker == "open" and (self.breaker_until_ms or 0) > self.now_ms:
            return "breaker_open"
        if self.breaker in ("open", "half"):
            return "breaker_half_open"
        if (self.cooldown_until_ms or 0) > self.now_ms:
            return "cooling_down"
        return "available"


def _opt(fields: Mapping[str, str], name: str) -> int | None:
    value = fields.get(name)
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


async def key_live_state(store: ConfigStore, provider: str, key_id: str) -> KeyLiveState:
    fields, window = await store.key_hash(provider, key_id)
    disabled = (await store.disabled_keys(provider)).get(key_id)
    now = await store.server_time_ms()
    return KeyLiveState(
        now_ms=now,
        disabled=disabled,
        in_flight=max(0, _opt(fields, "infl") or 0),
        cooldown_until_ms=_opt(fields, "cool_until"),
        breaker=fields.get("br", "closed"),
        breaker_until_ms=_opt(fields, "br_until"),
        remaining_requests=_opt(fields, "rem_req"),
        remaining_tokens=_opt(fields, "rem_tok"),
        remaining_reset_ms=_opt(fields, "rem_reset"),
        latency_ms=_opt(fields, "lat"),
        requests_last_minute=window,
    )
