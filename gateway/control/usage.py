"""Usage and live key state, read from the hashes acquire/settle and client_settle write.

The scripts write each request once, into an hour bucket, in one field group; every total a
view shows (per key, per model, per client) is summed here, at read time:

    <prefix>:{pool:<provider>}:u:h:<epoch hour>   fields <key id>|<upstream model>:<metric>
    <prefix>:{client:<id>}:u:h:<epoch hour>       fields a:<alias>:<metric>
    metric: req | in | out | cost (micro-dollars) | err

Key ids hold neither '|' nor ':', so a pool field parses back whatever the model name holds.

Day buckets (`u:d:<epoch day>`, same fields) are filled by a roll-up inside the same scripts,
once an hour per pool and per client: `u:last` (a hash, field `h`) holds the last hour written,
and when a request arrives in a later hour, the marker's hour bucket is first added into its day
bucket and the marker moves. So every hour bucket before the marker's hour is in its day bucket,
and the marker's hour bucket is not yet: a day = its bucket + the marker's hour bucket when that
hour falls in the day. `_day_tables` reads exactly that, with the marker read before and after
the buckets, so a roll-up in between is seen and the read repeated.

Buckets written before this layout hold `k:<key id>:` and `m:<model>:` (pools) or `all:` and
`m:<alias>:` (clients) fields, in their hour and day buckets alike; they are still read (until
they expire) and never rolled up.

Retention is the scripts': an hour bucket lives 8 days after its roll-up, a day bucket 400 days.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
_HOURS_PER_DAY = 24
_READ_ATTEMPTS = 5
"""Reads of a day view repeated when a roll-up ran meanwhile (one an hour: twice is plenty)."""

Table = dict[str, int]
"""One bucket's fields as integers."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    start_ms: int
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    errors: int


# -- the fields ------------------------------------------------------------------------------


def _pool_field(field: str) -> tuple[str | None, str | None, str]:
    """(key id, upstream model, metric) of a pool bucket's field; None where it does not say."""
    head, _, metric = field.rpartition(":")
    key_id, sep, model = head.partition("|")
    if sep and ":" not in key_id:
        return key_id, model, metric
    if head.startswith("k:"):  # the layout before the roll-up
        return head[2:], None, metric
    if head.startswith("m:"):
        return None, head[2:], metric
    return None, None, metric


def _pool_rolls(field: str) -> bool:
    """Whether the roll-up (settle.lua) adds this field of an hour bucket into its day."""
    key_id, sep, _ = field.partition("|")
    return bool(sep) and ":" not in key_id


def _client_metric(field: str) -> str | None:
    """The metric a client bucket's field adds to the client's total, None if it adds nothing."""
    if field.startswith("a:"):
        return field.rpartition(":")[2]
    if field.startswith("all:"):  # the layout before the roll-up; its `m:` fields repeat `all:`
        return field[4:]
    return None


def _client_rolls(field: str) -> bool:
    """Whether the roll-up (client_settle.lua) adds this field of an hour bucket into its day."""
    return field.startswith("a:")


# -- the buckets -----------------------------------------------------------------------------


def _buckets(period: Period, last: int, now_ms: int) -> list[int]:
    current = now_ms // _SPAN_MS[period]
    return list(range(current - last + 1, current + 1))


def _ints(raw: Mapping[str, str]) -> Table:
    return {k: int(v) for k, v in raw.items()}


def _marker(raw: Mapping[str, str]) -> int | None:
    value = raw.get("h")
    return None if value is None else int(value)


async def _day_tables(
    store: ConfigStore,
    prefixes: list[str],
    days: list[int],
    rolls: Callable[[str], bool],
) -> list[list[Table]]:
    """Per prefix, each day's fields: its day bucket + the marker's hour bucket in that day.

    The marker is read first, then the buckets and the marker again in one pipeline (all of a
    prefix's keys share one hash tag, so they are read in order on one node). The marker only
    moves forward, by a roll-up; the same marker on both sides means none ran in between.
    """
    marks = [_marker(t) for t in await store.hashes([f"{p}:u:last" for p in prefixes])]
    for attempt in range(_READ_ATTEMPTS):
        names: list[str] = []
        for prefix, mark in zip(prefixes, marks, strict=True):
            names += [f"{prefix}:u:d:{d}" for d in days]
            if mark is not None and mark // _HOURS_PER_DAY in days:
                names.append(f"{prefix}:u:h:{mark}")
            names.append(f"{prefix}:u:last")
        replies = iter(await store.hashes(names))
        tables: list[list[Table]] = []
        after: list[int | None] = []
        for mark in marks:
            per_day = [_ints(next(replies)) for _ in days]
            if mark is not None and mark // _HOURS_PER_DAY in days:
                hour = _ints(next(replies))
                day = per_day[days.index(mark // _HOURS_PER_DAY)]
                for field, value in hour.items():
                    if rolls(field):
                        day[field] = day.get(field, 0) + value
            tables.append(per_day)
            after.append(_marker(next(replies)))
        if after == marks or attempt == _READ_ATTEMPTS - 1:
            return tables
        marks = after
    raise AssertionError("unreachable")  # pragma: no cover


async def _tables(
    store: ConfigStore,
    prefixes: list[str],
    period: Period,
    last: int,
    rolls: Callable[[str], bool],
) -> tuple[list[int], list[list[Table]]]:
    """The buckets of the range, oldest first, and per prefix each bucket's fields."""
    buckets = _buckets(period, last, await store.server_time_ms())
    if period == "day":
        return buckets, await _day_tables(store, prefixes, buckets, rolls)
    replies = await store.hashes([f"{p}:u:h:{b}" for p in prefixes for b in buckets])
    n = len(buckets)
    return buckets, [[_ints(t) for t in replies[i * n : (i + 1) * n]] for i in range(len(prefixes))]


def _row(period: Period, bucket: int, totals: Mapping[str, int]) -> UsageRow:
    return UsageRow(
        start_ms=bucket * _SPAN_MS[period],
        requests=totals.get("req", 0),
        tokens_in=totals.get("in", 0),
        tokens_out=totals.get("out", 0),
        cost_usd=totals.get("cost", 0) / 1_000_000,
        errors=totals.get("err", 0),
    )


def _add(totals: dict[str, int], metric: str, value: int) -> None:
    totals[metric] = totals.get(metric, 0) + value


# -- the views -------------------------------------------------------------------------------


async def client_usage(
    store: ConfigStore, client_id: str, period: Period, last: int
) -> list[UsageRow]:
    """One client key's usage, oldest bucket first (every model it called)."""
    prefix = client_prefix(store.state.prefix, client_id)
    buckets, (tables,) = await _tables(store, [prefix], period, last, _client_rolls)
    rows = []
    for bucket, table in zip(buckets, tables, strict=True):
        totals: dict[str, int] = {}
        for field, value in table.items():
            metric = _client_metric(field)
            if metric is not None:
                _add(totals, metric, value)
        rows.append(_row(period, bucket, totals))
    return rows


async def key_usage(
    store: ConfigStore, provider: str, key_id: str, period: Period, last: int
) -> list[UsageRow]:
    """One upstream key's usage, oldest bucket first (every model it served)."""
    prefix = pool_prefix(store.state.prefix, provider)
    buckets, (tables,) = await _tables(store, [prefix], period, last, _pool_rolls)
    rows = []
    for bucket, table in zip(buckets, tables, strict=True):
        totals: dict[str, int] = {}
        for field, value in table.items():
            kid, _, metric = _pool_field(field)
            if kid == key_id:
                _add(totals, metric, value)
        rows.append(_row(period, bucket, totals))
    return rows


async def model_usage(
    store: ConfigStore, providers: Iterable[str], period: Period, last: int
) -> dict[tuple[str, str], list[UsageRow]]:
    """(provider, upstream model) -> rows, for every model that has usage in the range."""
    names = list(providers)
    prefixes = [pool_prefix(store.state.prefix, p) for p in names]
    buckets, tables = await _tables(store, prefixes, period, last, _pool_rolls)
    found: dict[tuple[str, str], list[dict[str, int]]] = {}
    for provider, per_bucket in zip(names, tables, strict=True):
        for i, table in enumerate(per_bucket):
            for field, value in table.items():
                _, model, metric = _pool_field(field)
                if model is None:
                    continue
                rows = found.setdefault((provider, model), [{} for _ in buckets])
                _add(rows[i], metric, value)
    return {
        subject: [_row(period, b, totals) for b, totals in zip(buckets, rows, strict=True)]
        for subject, rows in found.items()
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
