"""Degraded mode keeps a stated bound for each kind of state (docs/architecture.md, the table
under "Degraded mode"), proved here one bound per test against a real redis-server that the
test stops and starts again.

Each test runs one gateway in this process (tests/unit/lifecycle/in_process.py: the app as
served, a scripted upstream) on a redis-server of its own. Redis is "down" when that server is
stopped: connections are refused, the Redis guard trips, and requests carry
`x-keyway-degraded`. The scripted upstream reports 11 input and 7 output tokens per answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import yaml
from prometheus_client import REGISTRY

from gateway.api.hot_paths import HotPathDispatcher
from gateway.app import create_app
from gateway.config_load import apply_env, parse_config
from gateway.control.store import ConfigStore
from gateway.runtime import Gateway
from gateway.state.connection import open_redis
from gateway.state.store import SharedState
from tests.harness import Proc, free_port, start_redis
from tests.unit.lifecycle.in_process import ENV, Lifecycle
from tests.unit.lifecycle.scripted_transport import ScriptedTransport
from tests.unit.lifecycle.upstream_replies import answer

pytestmark = pytest.mark.redis

CHAT = msgspec.json.encode(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
)

PRICES = "prices:\n  m-up: {input: 1000, output: 100000}\n"
"""Per answer 11 x 1000 + 7 x 100 000 = 711 000 micro-dollars; the estimate held at admission
(input price only, a few dozen tokens) is far less: one answer spends far more than it held."""


TWO_KEYS = "      - {id: k1, secret: sk-p-0001}\n      - {id: k2, secret: sk-p-0002}"


def _config(*, keys: str = "", clients: str = "", routing: str = "", extra: str = "") -> str:
    return f"""
providers:
  p:
    kind: openai
    base_url: https://p.example/v1
    keys:
{keys or TWO_KEYS}
models:
  m:
    strategy: priority
    deployments: [{{provider: p, model: m-up}}]
clients:
{clients or "  - {id: alice, key: sk-alice}"}
  - {{id: bob, key: sk-bob}}
routing:
  cooldown_s: 30
{routing}
{extra}
"""


@contextlib.asynccontextmanager
async def _gateway(
    text: str, port: int, env: dict[str, str] | None = None
) -> AsyncIterator[Lifecycle]:
    """tests/unit/lifecycle/in_process.py `running`, on the Redis at `port`, with `env` added."""
    cfg = parse_config(apply_env(yaml.safe_load(text), {"REDIS_URL": _url(port)}))
    upstream = ScriptedTransport(answer)
    gw = Gateway(cfg, {**ENV, **(env or {})}, transport=upstream)
    app = create_app(cfg, gw)
    served = HotPathDispatcher(app, app.state.hot_routes)
    await gw.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://keyway"
        ) as http:
            yield Lifecycle(gw, served, upstream, http)
    finally:
        await gw.stop()


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


async def _until(check: Callable[[], bool], what: str) -> None:
    """Wait for a condition (bounded: a hang fails the test, saying what it waited for)."""
    try:
        async with asyncio.timeout(20):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"still waiting for {what}") from None


async def _chat(lc: Lifecycle, client: str = "alice") -> httpx.Response:
    response = await lc.post("/v1/chat/completions", CHAT, client)
    if response.status_code == 200:
        # the local charge lands in the background: let it, so the next admission sees it
        await _until(lambda: lc.gw.settler.pending == 0, "the settlements of the answer")
    return response


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def _stop(store: Proc) -> None:
    """Stop Redis; the gateway's next call finds it gone (degraded mode)."""
    await asyncio.to_thread(store.stop)


async def _restart(procs: contextlib.ExitStack, logs: Path, port: int, lc: Lifecycle) -> Proc:
    """Start an empty Redis on `port`; wait until the gateway is back on it, queue replayed."""
    store = procs.enter_context(await asyncio.to_thread(start_redis, logs, port=port))
    await _until(lambda: not lc.gw.degraded_mode, "the gateway to find Redis again")
    await _until(lambda: lc.gw.settler.queued == 0, "the queued settlements to be replayed")
    return store


# -- 1. a worker that never saw the fleet ------------------------------------------------------


async def test_a_worker_started_during_an_outage_takes_the_configured_fleet_share() -> None:
    """No heartbeat ever reached Redis: the worker divides by `routing.degraded_replicas`, not
    by 1 (which let every such worker admit the whole fleet's limit)."""
    port = free_port()  # nothing listens: Redis is down from the start
    text = _config(
        clients="  - {id: alice, key: sk-alice, rpm: 8}", routing="  degraded_replicas: 4"
    )
    async with _gateway(text, port) as lc:
        codes = [(await _chat(lc)).status_code for _ in range(4)]
        assert lc.gw.degraded_mode
        assert codes == [200, 200, 429, 429], codes  # 8 rpm over 4 workers: 2 each


async def test_a_worker_that_knows_no_fleet_size_refuses_limited_traffic_only() -> None:
    port = free_port()
    text = _config(clients="  - {id: alice, key: sk-alice, rpm: 1000}")
    async with _gateway(text, port) as lc:
        limited = await _chat(lc, "alice")
        assert limited.status_code == 429, limited.text
        assert _code(limited) == "client_rpm"
        assert limited.headers["x-keyway-degraded"] == "redis-unavailable"
        unlimited = await _chat(lc, "bob")  # no limit of bob's or of the keys' to share
        assert unlimited.status_code == 200, unlimited.text


# -- 2. a limit smaller than the fleet ---------------------------------------------------------


async def test_a_limit_smaller_than_the_fleet_admits_nothing_locally(
    procs: contextlib.ExitStack, logs: Path
) -> None:
    """3 rpm over 4 workers: max(1, 3 // 4) gave each worker 1, 4 in all. Now each gets 0."""
    store = procs.enter_context(start_redis(logs))
    text = _config(
        keys="      - {id: k1, secret: sk-p-0001, rpm: 3}",
        clients="  - {id: alice, key: sk-alice, rpm: 3}",
        routing="  degraded_replicas: 4",
    )
    async with _gateway(text, store.port) as lc:
        assert (await _chat(lc, "bob")).status_code == 200  # Redis up: the key's 3 rpm hold
        await _stop(store)
        client_limited = await _chat(lc, "alice")
        assert client_limited.status_code == 429, client_limited.text
        assert _code(client_limited) == "client_rpm"
        key_limited = await _chat(lc, "bob")  # bob has no limit; the only key has 3 rpm
        assert key_limited.status_code == 503, key_limited.text
        assert _code(key_limited) == "no_available_key"
        assert key_limited.headers["x-keyway-degraded"] == "redis-unavailable"
        assert len(lc.upstream.requests) == 1


# -- 3. the budget allowance is per period, not per outage --------------------------------------


async def test_a_flapping_redis_grants_no_fresh_budget_allowance(
    procs: contextlib.ExitStack, logs: Path
) -> None:
    store = procs.enter_context(start_redis(logs))
    text = _config(
        clients="  - {id: alice, key: sk-alice, budget_daily_usd: 100}",
        routing="  degraded_budget_allowance_usd: 0.1",  # less than one answer's cost
        extra=PRICES,
    )
    async with _gateway(text, store.port) as lc:
        assert (await _chat(lc)).status_code == 200
        await _stop(store)
        first = [await _chat(lc) for _ in range(2)]
        assert [r.status_code for r in first] == [200, 429], [r.text for r in first]
        assert _code(first[1]) == "client_budget_day"
        store = await _restart(procs, logs, store.port, lc)
        assert (await _chat(lc)).status_code == 200  # on Redis: the budget of 100 USD
        await _stop(store)
        again = await _chat(lc)
        assert again.headers["x-keyway-degraded"] == "redis-unavailable"
        assert again.status_code == 429, "the second outage of the day granted a new allowance"
        assert _code(again) == "client_budget_day"


# -- 4. keys disabled in Redis stay disabled ----------------------------------------------------


async def _disable(port: int, key_id: str) -> None:
    """What the admin API's `POST /admin/providers/p/keys/<id>/disable` writes."""
    state = SharedState(open_redis(_url(port)), prefix="kw")
    try:
        await ConfigStore(state).set_key_disabled("p", key_id, True, "revoked by the operator")
    finally:
        await state.aclose()


async def test_a_key_disabled_before_the_outage_is_not_used_during_it(
    procs: contextlib.ExitStack, logs: Path
) -> None:
    store = procs.enter_context(start_redis(logs))
    await _disable(store.port, "k1")  # `priority`: k1 first whenever it may be used
    async with _gateway(_config(), store.port) as lc:
        assert (await _chat(lc)).headers["x-keyway-key"] == "k2"
        await _stop(store)
        during = [await _chat(lc) for _ in range(3)]
        assert [r.status_code for r in during] == [200] * 3
        assert all(r.headers["x-keyway-degraded"] == "redis-unavailable" for r in during)
        assert [r.headers["x-keyway-key"] for r in during] == ["k2"] * 3


async def test_a_key_disabled_while_running_is_not_used_once_the_watcher_read_it(
    procs: contextlib.ExitStack, logs: Path
) -> None:
    store = procs.enter_context(start_redis(logs))
    async with _gateway(_config(), store.port, {"KEYWAY_CONFIG_POLL_S": "0.1"}) as lc:
        assert (await _chat(lc)).headers["x-keyway-key"] == "k1"
        await _disable(store.port, "k1")
        await _until(lambda: "k1" in lc.gw.control.disabled.get("p", ()), "the watcher's next poll")
        await _stop(store)
        during = await _chat(lc)
        assert during.status_code == 200, during.text
        assert during.headers["x-keyway-degraded"] == "redis-unavailable"
        assert during.headers["x-keyway-key"] == "k2"


# -- 5. late charges count against the monthly budget -------------------------------------------


async def test_a_late_charge_counts_against_the_monthly_budget(
    procs: contextlib.ExitStack, logs: Path
) -> None:
    """An answer served during an outage is charged to Redis on recovery (client_settle.lua
    `late`): to the month's spend too, else a monthly budget forgets every outage."""
    store = procs.enter_context(start_redis(logs))
    text = _config(
        clients="  - {id: alice, key: sk-alice, budget_monthly_usd: 0.1}",  # < one answer
        extra=PRICES,
    )
    async with _gateway(text, store.port) as lc:
        await _stop(store)
        served = await _chat(lc)
        assert served.status_code == 200, served.text
        assert served.headers["x-keyway-degraded"] == "redis-unavailable"
        store = await _restart(procs, logs, store.port, lc)
        after = await _chat(lc)
        assert "x-keyway-degraded" not in after.headers
        assert after.status_code == 429, "the late charge did not reach the monthly spend"
        assert _code(after) == "client_budget_month"


# -- 6. the settlement queue's bound ------------------------------------------------------------


def _dropped() -> float:
    value = REGISTRY.get_sample_value("keyway_settlements_dropped_total", {"reason": "queue_full"})
    return value or 0.0


async def test_a_full_settlement_queue_drops_the_oldest_counted_and_warned_once(
    procs: contextlib.ExitStack, logs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = procs.enter_context(start_redis(logs))
    text = _config(routing="  degraded_settlement_queue: 3")
    async with _gateway(text, store.port) as lc:
        settler = lc.gw.settler
        before = _dropped()
        await _stop(store)
        with caplog.at_level(logging.WARNING, logger="keyway.settle"):
            for _ in range(6):  # each leaves a late charge for Redis (usage has its own buffer)
                assert (await _chat(lc)).status_code == 200
            assert settler.queued == 3
            assert settler.dropped >= 3
            assert _dropped() - before == settler.dropped
            full = [r for r in caplog.records if "settlement queue full" in r.getMessage()]
            assert len(full) == 1, [r.getMessage() for r in caplog.records]
            await _restart(procs, logs, store.port, lc)
            summary = [r for r in caplog.records if "were dropped" in r.getMessage()]
            assert len(summary) == 1 and summary[0].levelno == logging.WARNING
