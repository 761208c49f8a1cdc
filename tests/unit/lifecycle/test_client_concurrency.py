"""A client key's cap on requests in flight (routing/client_gate.py), held by the request's owner.

A request above its client's cap is refused at once with 429 `client_concurrency` and
`Retry-After: 1`, in the endpoint's dialect, before anything is asked of the store: no upstream
call, no admission hold, no lease. The slot is held from the owner's entry to its exit, the
whole time a stream is relayed, and given back exactly once however the request ends: every
stage of the fault matrix (stages.py: refusals, upstream failures, cuts, a client that leaves, a
cancelled task, a store that raises), a stream cut at `routing.max_stream_s`, a bug in the relay.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import yaml
from prometheus_client import REGISTRY

import gateway.api.endpoint
import gateway.routing.owner
from gateway.config import Config
from gateway.config_load import apply_env, parse_config
from gateway.routing.client_gate import ClientGate
from tests.unit.lifecycle import in_process
from tests.unit.lifecycle.combos import COMBOS, Combo, assert_dialect_error
from tests.unit.lifecycle.in_process import CONFIG, AsgiCall, Lifecycle, running
from tests.unit.lifecycle.ledger import assert_settled, client_ledger
from tests.unit.lifecycle.scripted_transport import Reply, SentRequest
from tests.unit.lifecycle.stages import STAGES, Stage
from tests.unit.lifecycle.upstream_replies import answer, canned_stream

CHAT = next(c for c in COMBOS if (c.endpoint, c.upstream, c.stream) == ("chat", "openai", True))
MESSAGES = next(
    c for c in COMBOS if (c.endpoint, c.upstream, c.stream) == ("messages", "anthropic", False)
)
MATRIX_COMBOS = [c for c in COMBOS if c.endpoint in ("chat", "messages")]


class LedgerGate(ClientGate):
    """The process's gate as the owners use it, with every slot taken and given back counted."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: Counter[str] = Counter()
        self.left: Counter[str] = Counter()

    def enter(self, client_id: str, cap: int) -> bool:
        taken = super().enter(client_id, cap)
        if taken:
            self.entered[client_id] += 1
        return taken

    def leave(self, client_id: str) -> None:
        self.left[client_id] += 1
        super().leave(client_id)

    def assert_released(self) -> None:
        assert self.entered == self.left, f"slots taken {self.entered}, given back {self.left}"
        assert len(self) == 0, "a client still holds a slot"


def capped_config(**routing: Any) -> Config:
    """CONFIG with caps: alice 2 of her own, carol 0 (none), bob and broke the default, 1."""
    doc = yaml.safe_load(CONFIG)
    doc["clients"][0]["max_concurrency"] = 2
    doc["clients"].append({"id": "carol", "key": "sk-carol", "max_concurrency": 0})
    doc["routing"].update({"client_max_concurrency": 1, **routing})
    return parse_config(apply_env(doc, {}))


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerGate]:
    ledger = LedgerGate()
    monkeypatch.setattr(gateway.routing.owner, "CLIENT_GATE", ledger)
    monkeypatch.setitem(in_process.KEYS, "carol", "sk-carol")
    yield ledger


@pytest.fixture
async def lc(gate: LedgerGate) -> AsyncIterator[Lifecycle]:
    async with running(capped_config()) as lifecycle:
        yield lifecycle


def hanging_stream(request: SentRequest) -> Reply:
    """Every request streams two pieces of its answer, then hangs until it is cancelled."""
    stream = canned_stream(request, usage=False)
    assert stream is not None
    return answer(request, usage=False).hang(stream.after_pieces(2))


async def hold(lc: Lifecycle, client: str, count: int) -> list[AsgiCall]:
    """`count` streams of `client`, each once it hangs mid-way (its slot surely taken)."""
    calls = []
    for n in range(1, count + 1):
        before = len(lc.upstream.hung)
        call = lc.start(CHAT.path, CHAT.body(), client)
        calls.append(call)
        for _ in range(10_000):  # loop turns, not time: the request runs in this loop
            if len(lc.upstream.hung) > before or call.task.done():
                break
            await asyncio.sleep(0)
        assert not call.task.done(), f"stream {n} of {client} ended: {call.status} {call.body!r}"
        assert len(lc.upstream.hung) > before, f"stream {n} of {client} never reached the upstream"
    return calls


async def let_go(calls: list[AsgiCall]) -> None:
    for call in calls:
        call.disconnect()
    await asyncio.gather(*(c.task for c in calls))


def refusals() -> float:
    return (
        REGISTRY.get_sample_value("keyway_rate_limited_total", {"scope": "client_concurrency"})
        or 0.0
    )


# -- the cap ------------------------------------------------------------------------------------


def test_the_gate_counts_per_client_and_a_cap_of_0_is_none() -> None:
    gate = ClientGate()
    assert gate.enter("a", 2) and gate.enter("a", 2) and not gate.enter("a", 2)
    assert gate.enter("b", 2)  # another client's slots are its own
    assert all(gate.enter("c", 0) for _ in range(1000))
    gate.leave("a")
    assert gate.in_flight("a") == 1 and gate.enter("a", 2)
    for _ in range(2):
        gate.leave("a")
    for _ in range(1000):
        gate.leave("c")
    gate.leave("b")
    assert len(gate) == 0


async def test_above_its_cap_a_client_gets_429_in_each_dialect_and_reserves_nothing(
    lc: Lifecycle, gate: LedgerGate
) -> None:
    lc.upstream.handler = hanging_stream
    held = await hold(lc, "alice", 2)
    sent, counted = len(lc.upstream.requests), refusals()
    holds = (await client_ledger(lc.gw, "alice")).holds

    third = await lc.post(CHAT.path, CHAT.body(), "alice")
    assert third.status_code == 429, third.text
    assert third.headers["retry-after"] == "1"
    error = third.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "client_concurrency")
    fourth = await lc.post(MESSAGES.path, MESSAGES.body(), "alice")
    assert fourth.status_code == 429 and fourth.headers["retry-after"] == "1"
    assert_dialect_error(MESSAGES, 429, fourth.content)
    assert fourth.json()["error"]["type"] == "rate_limit_error"

    assert len(lc.upstream.requests) == sent, "a refused request reached the upstream"
    assert (await client_ledger(lc.gw, "alice")).holds == holds, "a refused request was admitted"
    assert refusals() == counted + 2
    assert gate.in_flight("alice") == 2

    lc.upstream.handler = answer
    other = await lc.post(CHAT.path, CHAT.body(), "bob")  # another client is served meanwhile
    assert other.status_code == 200, other.text
    await let_go(held)
    again = await lc.post(CHAT.path, CHAT.body(), "alice")
    assert again.status_code == 200, again.text
    await lc.settle()
    await assert_settled(lc.gw)
    gate.assert_released()


@pytest.mark.parametrize(
    ("client", "cap"), [("alice", 2), ("bob", 1), ("carol", 0)], ids=["own", "default", "none"]
)
async def test_a_clients_own_cap_wins_over_the_default_and_0_is_none(
    lc: Lifecycle, gate: LedgerGate, client: str, cap: int
) -> None:
    lc.upstream.handler = hanging_stream
    held = await hold(lc, client, cap or 5)  # carol: 5 > the default, 1
    if cap:
        over = await lc.post(MESSAGES.path, MESSAGES.body(), client)
        assert over.status_code == 429 and over.headers["retry-after"] == "1", over.text
        assert_dialect_error(MESSAGES, 429, over.content)
    assert gate.in_flight(client) == (cap or 5)
    await let_go(held)
    await lc.settle()
    await assert_settled(lc.gw)
    gate.assert_released()


# -- released on every path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("combo", "stage"),
    [
        pytest.param(combo, stage, id=f"{combo.id}-{stage.name}")
        for combo in MATRIX_COMBOS
        for stage in STAGES
        if stage.applies(combo)
    ],
)
async def test_the_slot_is_given_back_once_however_the_request_ends(
    lc: Lifecycle, gate: LedgerGate, monkeypatch: pytest.MonkeyPatch, combo: Combo, stage: Stage
) -> None:
    await stage.arrange(lc, combo, monkeypatch)
    body = combo.body()[:-2] if stage.malformed else combo.body()
    status, reply = await lc.drive(combo.path, body, stage.client, stage.drive)
    stage.check_client(combo, status, reply)  # the cap (1 or 2) let the request through
    # a body that does not parse is refused before the request has an owner
    assert gate.entered[stage.client] == (0 if stage.malformed else 1)
    gate.assert_released()


async def test_a_stream_cut_at_max_stream_s_gives_its_slot_back(gate: LedgerGate) -> None:
    async with running(capped_config(max_stream_s=0.05)) as lc:
        lc.upstream.handler = hanging_stream
        cut = lc.start(CHAT.path, CHAT.body(), "bob")
        await cut.task  # ends by itself: the relay cuts the stream (the client never left)
        assert cut.status == 200 and b"data: [DONE]" not in cut.body
        gate.assert_released()
        lc.upstream.handler = answer
        assert (await lc.post(CHAT.path, CHAT.body(), "bob")).status_code == 200
        await lc.settle()
        await assert_settled(lc.gw)
    gate.assert_released()


async def test_a_bug_in_the_relay_gives_the_slot_back(
    lc: Lifecycle, gate: LedgerGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("relay bug")

    relay_json = gateway.api.endpoint.relay_json
    monkeypatch.setattr(gateway.api.endpoint, "relay_json", broken)
    response = await lc.post(MESSAGES.path, MESSAGES.body(), "bob")
    assert response.status_code == 500
    assert_dialect_error(MESSAGES, 500, response.content)
    gate.assert_released()
    monkeypatch.setattr(gateway.api.endpoint, "relay_json", relay_json)
    assert (await lc.post(MESSAGES.path, MESSAGES.body(), "bob")).status_code == 200


def test_the_cap_is_read_from_the_config_and_cannot_be_negative() -> None:
    cfg = capped_config()
    assert cfg.routing.client_max_concurrency == 1
    assert [c.max_concurrency for c in cfg.clients] == [2, None, None, 0]
    doc = yaml.safe_load(CONFIG)
    doc["clients"][0]["max_concurrency"] = -1
    with pytest.raises(Exception, match="max_concurrency"):
        parse_config(apply_env(doc, {}))
    assert msgspec.convert({}, type(cfg.routing)).client_max_concurrency == 250
